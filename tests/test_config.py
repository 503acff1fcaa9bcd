"""Workflow configuration: overlays in order on top of the chosen base, and unknown keys named as errors."""

import dataclasses
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from rpc.engine.train import TrainConfig
from rpc.models.rpc import ModelConfig

REPO = Path(__file__).resolve().parents[1]


def _workdir(tmp_path: Path, **files) -> Path:
    for name in ("Snakefile", "workflow", "config", "envs"):
        (tmp_path / name).symlink_to(REPO / name)
    for name, content in files.items():
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(content))
    return tmp_path


def _dry_run(work: Path, *args) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "snakemake", "-n", "-p", "--cores", "1", *args]
    return subprocess.run(cmd, cwd=work, capture_output=True, text=True, timeout=300)


def _commands(out: str, stage: str) -> list[list[str]]:
    return [shlex.split(line.split("python -m rpc", 1)[1]) for line in out.splitlines()
            if "python -m rpc" in line and f"rpc {stage} " in line]  # fmt: skip


def test_schema_lists_exactly_the_model_and_train_fields():
    from rpc.engine.pretrain import PretrainConfig

    schema = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())
    defs = schema["$defs"]
    assert set(defs["model"]["properties"]) == {f.name for f in dataclasses.fields(ModelConfig)}
    assert set(defs["train"]["properties"]) == {f.name for f in dataclasses.fields(TrainConfig)}
    # the same schema checks the pretraining command's settings
    assert set(schema["properties"]["pretrain"]["properties"]) == {f.name for f in dataclasses.fields(PretrainConfig)}
    # every field typed (a value of the wrong type fails the dry run, not a job after pretraining)
    for section in ("model", "train"):
        untyped = [k for k, v in defs[section]["properties"].items() if "type" not in v]
        assert not untyped, (section, untyped)


def test_a_value_of_the_wrong_type_fails_the_dry_run(tmp_path):
    work = _workdir(tmp_path)
    (work / "typo.yaml").write_text("train:\n  lr: 5e-2\n")  # YAML 1.1 (PyYAML): a string, not a number
    proc = _dry_run(work, "--configfile", "typo.yaml")
    assert proc.returncode != 0 and "'5e-2' is not of type 'number'" in proc.stdout + proc.stderr


def test_a_small_overlay_applies_on_top_of_the_embedded_default(tmp_path):
    work = _workdir(tmp_path, crf40={"crf": {"bilateral_sxy": 40}, "segmentation": {"crf": {"bilateral_sxy": 67}}})
    proc = _dry_run(work, "--configfile", "crf40.yaml")
    assert proc.returncode == 0, proc.stderr[-2000:]
    crf = _commands(proc.stdout, "pseudo-masks")
    assert crf and all("bilateral_sxy=40" in c for c in crf)
    predict = _commands(proc.stdout, "seg-crf")  # the segmentation CRF is configurable the same way
    assert predict and all(c[c.index("--set") + 1] == "bilateral_sxy=67" for c in predict)
    assert _commands(proc.stdout, "synth")  # the demo's synthetic dataset: the default is the base


def test_predictions_are_planned_in_shards_and_gathered(tmp_path):
    """segmentation.predict_shards: 3 prediction jobs per DeepLab run, shards 0-2 of the scored split, each with its
    own folders, each shard's CRF a job of its own on that shard's scores, gathered into the run's pred/ and
    pred_crf/."""
    work = _workdir(tmp_path, shards={"segmentation": {"predict_shards": 3}})
    proc = _dry_run(work, "--configfile", "shards.yaml")
    assert proc.returncode == 0, proc.stderr[-2000:]
    predict = _commands(proc.stdout, "seg-predict")
    runs: dict[str, set] = {}
    for c in predict:
        assert c[c.index("--num-shards") + 1] == "3"
        run = c[c.index("--out") + 1].split("/segmentation/")[0]
        runs.setdefault(run, set()).add(int(c[c.index("--shard") + 1]))
        assert c[c.index("--out") + 1].endswith(f"pred_shards/shard_{c[c.index('--shard') + 1]}/pred")
    assert runs and all(shards == {0, 1, 2} for shards in runs.values()), runs
    crf = _commands(proc.stdout, "seg-crf")
    assert len(crf) == len(predict)
    for c in crf:  # shard i's CRF reads what shard i's prediction job stored
        i = c[c.index("--shard") + 1]
        assert c[c.index("--num-shards") + 1] == "3" and c[c.index("--scores") + 1].endswith(f"shard_{i}/scores")
    merges = [line for line in proc.stdout.splitlines() if "rpc merge-dirs" in line and "/segmentation/pred" in line]
    assert len(merges) == len(runs)


def test_the_second_benchmark_is_an_overlay_of_the_default(tmp_path):
    work = _workdir(tmp_path)
    proc = _dry_run(work, "--configfile", "config/creatures.yaml")
    assert proc.returncode == 0, proc.stderr[-2000:]
    synth = _commands(proc.stdout, "synth")
    assert synth and synth[0][synth[0].index("--generator") + 1] == "creatures"
    assert "--size" in synth[0] and synth[0][synth[0].index("--n-train") + 1] == "640"  # the default's sizes


def test_a_real_base_with_overlays_never_gets_the_demo_sizes(tmp_path, voc_root):
    work = _workdir(tmp_path, small={"train": {"epochs": 1}, "cams": {"shards": 1}},
                    later={"train": {"epochs": 2}})  # fmt: skip
    proc = _dry_run(work, "--configfile", "config/voc.yaml", "small.yaml", "later.yaml",
                    "--config", f"dataset={{kind: voc, root: {voc_root}}}")  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    train = _commands(proc.stdout, "train")
    assert len(train) == 3  # rpc, sipe, cam of voc.yaml, one seed each
    for cmd in train:
        sets = cmd[cmd.index("--set") + 1 :]
        assert "train.epochs=2" in sets  # overlays in order: the later one wins
        assert "model.depth=50" in sets  # voc.yaml's, not the demo's 18
        assert not [s for s in sets if s.startswith(("train.batch_size", "train.crop", "train.lr"))], sets
    assert len(_commands(proc.stdout, "cams")) == 3  # one shard each (the overlay), not voc.yaml's 8
    seg = _commands(proc.stdout, "seg-train")
    assert seg and not [c for c in seg if "--epochs" in c]  # VOC keeps its published 20k iterations


@pytest.mark.parametrize(
    "overlay, key",
    [
        ({"cams": {"shard": 8}}, "shard"),
        ({"model": {"dpeth": 50}}, "dpeth"),
        ({"experiments": {"rpc": {"preset": "rpc", "modle": {}}}}, "modle"),
        ({"segmentation": {"weigths": "pretrained"}}, "weigths"),
        ({"figure": {"count": 1}}, "figure"),
    ],
)
def test_unknown_config_keys_are_errors_naming_the_key(tmp_path, overlay, key):
    work = _workdir(tmp_path, typo=overlay)
    proc = _dry_run(work, "--configfile", "typo.yaml")
    assert proc.returncode != 0 and f"config: unknown key '{key}' in " in proc.stdout + proc.stderr, proc.stdout[-2000:]


def test_the_ablation_spec_is_validated(tmp_path):
    spec = yaml.safe_load((REPO / "config/ablations.yaml").read_text())
    spec["cells"]["abl_rs"]["modle"] = {}
    work = _workdir(tmp_path, abl=spec, use={"ablations": "abl.yaml"})
    proc = _dry_run(work, "--configfile", "use.yaml")
    assert proc.returncode != 0 and "'modle' was unexpected" in proc.stdout + proc.stderr
    del spec["cells"]["abl_rs"]["modle"]
    spec["tables"][0]["rows"][0]["cells"] = ["nosuchcell"]
    (work / "abl.yaml").write_text(yaml.safe_dump(spec))
    proc = _dry_run(work, "--configfile", "use.yaml")
    assert proc.returncode != 0 and "unknown cell 'nosuchcell'" in proc.stdout + proc.stderr


@pytest.mark.parametrize("command", [["--unlock"], ["--summary"], ["--dag"], ["--list-rules"]])
def test_commands_that_run_no_job_need_no_cores(tmp_path, command):
    """After a kill Snakemake says `snakemake --unlock`: it (and --summary, --dag) must work as printed, without
    --cores (the rules' thread counts read the run's cores)."""
    work = _workdir(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "snakemake", *command], cwd=work, capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-1500:] + proc.stderr[-1500:]


def test_deterministic_switch_reaches_deeplab(tmp_path):
    work = _workdir(tmp_path, det={"segmentation": {"deterministic": True}})
    proc = _dry_run(work, "--configfile", "det.yaml")
    assert proc.returncode == 0, proc.stderr[-2000:]
    seg = _commands(proc.stdout, "seg-train")
    assert seg and all("--deterministic" in c for c in seg)


def test_an_imported_run_name_with_a_dot_is_a_config_error(tmp_path):
    """Run names become results/<name>/ folders and wildcard values: names outside [A-Za-z0-9_-] are refused at
    validation, as experiment names are, instead of a MissingInputException about the summary."""
    work = _workdir(tmp_path, imported={"imported_maps": {"sipe.v2": {"path": "maps", "format": "sipe"}}})
    (work / "maps").mkdir()
    proc = _dry_run(work, "--configfile", "imported.yaml")
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "'sipe.v2' does not match '^[A-Za-z0-9_-]+$'" in out, out[-2000:]
    assert "MissingInputException" not in out


@pytest.mark.parametrize("override, expect", [
    ("seeds=[16]", "results/rpc-s16/classifier.pt"),
    ("crf={bilateral_sxy: 40}", "bilateral_sxy=40"),
    ("protect_models=true", "results/rpc-s15/classifier.pt"),
    ("train={channels_last: on}", """'train.channels_last="on"'"""),  # a string the schema allows stays one
])  # fmt: skip
def test_config_overrides_are_typed_as_snakemake_users_type_them(tmp_path, override, expect):
    """``--config`` hands nested numbers, lists and lowercase booleans over as strings; they are read as YAML where
    the schema wants another type."""
    proc = _dry_run(_workdir(tmp_path), "--config", override)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-2000:]
    assert expect in proc.stdout


@pytest.mark.parametrize("override, line", [
    ("experiment=rpc", "config: unknown key 'experiment' in (top level); allowed: ablations, cams,"),
    ("train={lr: x}", "config: train.lr: 'x' is not of type 'number'"),
    ("model={dpeth: 50}", "config: unknown key 'dpeth' in model; allowed: alpha, attention, attention_grad,"),
])  # fmt: skip
def test_a_config_error_is_one_line_naming_the_key(tmp_path, override, line):
    proc = _dry_run(_workdir(tmp_path), "--config", override)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and line in out, out[-2000:]
    assert len(out.splitlines()) < 12  # not the whole schema and config


def test_an_ablation_runs_pseudo_masks_cover_the_split_its_maps_cover(tmp_path):
    """An ablation run's maps cover only the scored split (train), so its pseudo masks (for the part scores) must
    too; a main run's cover train_aug, where DeepLab trains."""
    proc = _dry_run(_workdir(tmp_path), "results/abl_rs-s15/parts.json", "results/rpc-s15/parts.json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    splits = {c[c.index("--cams") + 1].split("/")[1]: c[c.index("--split") + 1]
              for c in _commands(proc.stdout, "pseudo-masks")}  # fmt: skip
    assert splits == {"abl_rs-s15": "train", "rpc-s15": "train_aug"}


@pytest.mark.parametrize("override, line", [
    ("crf={bilateral_sxy: -1}",
     "config: crf.bilateral_sxy: -1 is less than or equal to the minimum of 0; allowed: a number > 0"),
    ("train={epochs: 1e23}",
     "config: train.epochs: '1e23' is not of type 'integer'; allowed: an integer from 1 to 10000"),
    ("segmentation={epochs: 1.0e+23}",
     "config: segmentation.epochs: 1e+23 is greater than the maximum of 10000; allowed: a number > 0 and <= 10000 "
     "or null"),
    ("cpu_threads={train: 0}",
     "config: cpu_threads.train: 0 is not allowed; allowed: 'all', 'per_gpu' or an integer from 1 to 4096"),
    ("train={lr: 5e-2}",
     "config: train.lr: '5e-2' is not of type 'number'; allowed: a number > 0 (YAML reads 5e-2 as text: write 0.05)"),
    ("model={weights: gone.pth}",
     "config: model.weights: 'gone.pth' does not exist; allowed: imagenet, none, pretrained or a checkpoint file"),
    ("segmentation={config: gone.py}",
     "config: segmentation.config: 'gone.py' does not exist (looked in the working directory and in "),
    ("dataset={kind: voc, root: 'VOC{x}'}",
     "config: dataset.root: 'VOC{x}': paths and values with braces are not supported (Snakemake reads {...} as a "
     "wildcard)"),
])  # fmt: skip
def test_a_bad_value_or_path_stops_the_dry_run_in_one_line(tmp_path, override, line):
    """Out-of-range values, files that are not there and braces in paths are named before any job is planned."""
    proc = _dry_run(_workdir(tmp_path), "--config", override)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and line in out, out[-2000:]
    assert len(out.splitlines()) < 12 and "Traceback" not in out and "WildcardError" not in out


def test_a_working_directory_with_braces_stops_the_dry_run_in_one_line(tmp_path):
    work = tmp_path / "run{x}"
    work.mkdir()
    proc = _dry_run(_workdir(work))
    out = proc.stdout + proc.stderr
    line = (f"the working directory '{work}' has braces in its path, which are not supported (Snakemake reads {{...}} "
            "as a wildcard): use a folder without braces")  # fmt: skip
    assert proc.returncode != 0 and line in out, out[-2000:]
    assert len(out.splitlines()) < 12


def test_the_schema_bounds_every_crf_parameter():
    from rpc.models.dense_crf import CRFParams

    schema = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())
    crf = schema["$defs"]["crf"]["properties"]
    assert set(crf) == {f.name for f in dataclasses.fields(CRFParams)}
    unbounded = [k for k, v in crf.items() if not {"minimum", "exclusiveMinimum"} & set(v)]
    assert not unbounded


def test_the_files_a_run_starts_from_are_checked(tmp_path, monkeypatch):
    from rpc.utils.config_schema import missing_file

    monkeypatch.chdir(tmp_path)
    (tmp_path / "mine.pth").write_bytes(b"")
    (tmp_path / "folder.pth").mkdir()
    experiments = {"a": {"preset": "rpc"}, "b": {"preset": "rpc", "model": {"weights": "none"}}}
    ablations = str(REPO / "config/ablations.yaml")
    config = {"model": {"weights": "mine.pth"}, "ablations": ablations, "experiments": experiments}
    assert missing_file(config, REPO) is None
    # weights the workflow makes, and names, are no files to look for
    for weights in ("results/cam-s15/backbone.pth", "imagenet", "pretrained"):
        assert missing_file({**config, "model": {"weights": weights}}, REPO) is None
    config["experiments"]["b"]["model"]["weights"] = "folder.pth"
    assert missing_file(config, REPO) == (
        "config: experiments.b.model.weights: 'folder.pth' is a folder, not a file; allowed: imagenet, none, "
        "pretrained or a checkpoint file"
    )
    # only the weights an experiment uses: every experiment has its own here
    assert missing_file({**config, "model": {"weights": "gone"}, "experiments": {"b": {"model": {"weights": "none"}}}},
                        REPO) is None  # fmt: skip
    assert missing_file({"ablations": "/nowhere/ablations.yaml"}, REPO) == (
        "config: ablations: '/nowhere/ablations.yaml' does not exist"
    )


def test_braces_are_named_in_any_config_string():
    from rpc.utils.config_schema import brace_error

    assert brace_error({"segmentation": {"options": ["a=1", "b={x}"]}}) == (
        "config: segmentation.options[1]: 'b={x}': paths and values with braces are not supported (Snakemake reads "
        "{...} as a wildcard)"
    )
    assert brace_error({"dataset": {"root": "/data/voc"}}, {"working directory": "/tmp/a"}) is None


def test_the_model_settings_allowed_values_are_written_only_in_the_schema():
    """ModelConfig, the attention and prototype modules and the commands' --set checks all read model.*'s allowed
    values from the schema (rpc.utils.config_schema.allowed / check_section): no line of rpc/ lists them again."""
    from rpc.utils.config_schema import allowed, config_schema

    enums = {k: allowed("model", k) for k, v in config_schema()["$defs"]["model"]["properties"].items()
             if "enum" in v and all(isinstance(x, str) for x in v["enum"])}  # fmt: skip
    assert {"attention", "sfa_placement", "rs_background", "background"} <= set(enums)
    for path in (REPO / "rpc").rglob("*.py"):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            for key, values in enums.items():
                listed = all(f'"{v}"' in line or f"'{v}'" in line for v in values)
                assert not listed, f"{path.relative_to(REPO)}:{number} lists model.{key}'s values {values} again"
    with pytest.raises(ValueError, match=r"model: sfa_placement: 'mask' is not one of \['weight', 'gate'\]"):
        ModelConfig(sfa_placement="mask")
