"""The Snakemake workflow: lint, dry runs of the shipped configs, a tiny end-to-end run, params-only reruns."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]
ALL_RULES = {
    "prepare_dataset", "train_classifier", "rs_cams", "eval_cams", "pseudo_masks_shard", "merge_pseudo_masks",
    "eval_pseudo_masks", "train_segmentation", "predict_segmentation", "crf_predictions", "merge_predictions",
    "eval_segmentation", "figures_maps",
    "figures_predictions", "experiment_summary", "summary", "report_pages", "all",
}  # fmt: skip
UPPER_BOUND_RULES = {f"{r}_upper_bound" for r in (
    "train_segmentation", "predict_segmentation", "crf_predictions", "merge_predictions", "eval_segmentation",
    "figures_predictions", "experiment_summary")}
# the pretrained init, part-level scores, DeepLab on the ground truth (the upper bound: the default config has it)
SYNTHETIC_RULES = ALL_RULES | {"pretrain_backbone", "eval_parts"} | UPPER_BOUND_RULES


def _run(args, cwd, check=True, timeout=900):
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([*SNAKEMAKE, *args], cwd=cwd, capture_output=True, text=True, env=env, timeout=timeout)
    if check and proc.returncode != 0:
        pytest.fail(f"snakemake {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
                    + _failed_logs(proc.stdout + proc.stderr, cwd))
    return proc


def _failed_logs(output: str, cwd: Path) -> str:
    """The end of each failed job's own log (Snakemake names it as 'log: <path> (check log file(s) ...')."""
    paths = dict.fromkeys(re.findall(r"log: (\S+) \(check log file", output))
    tails = [f"\n--- {p} ---\n{(cwd / p).read_text(errors='replace')[-2000:]}" for p in paths if (cwd / p).is_file()]
    free = shutil.disk_usage(cwd).free / 2**30
    return "".join(tails) + f"\n(free disk space at {cwd}: {free:.1f} GiB)"


def _planned(args, cwd) -> dict[str, int]:
    """Jobs per rule of a dry run (the job-stats table)."""
    out = _run(["-n", *args, "--quiet", "rules"], cwd).stdout
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", out, re.M) if m[1] != "total"}


def _workdir(tmp_path: Path) -> Path:
    """A working folder that sees the repository's Snakefile, workflow/ and config/ (results land here)."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    for name in ("Snakefile", "workflow", "config", "envs"):
        (tmp_path / name).symlink_to(REPO / name)
    return tmp_path


def test_the_workflow_runs_from_any_folder_and_as_a_module(tmp_path):
    """``-s <repo>/Snakefile`` from an empty folder, and a Snakemake ``module`` of it in another workflow, plan the
    same jobs as a run in the repository (the shipped config, rules and mmseg files are found from the Snakefile)."""
    here = _planned([], _workdir(tmp_path / "repo_like"))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    assert _planned(["-s", str(REPO / "Snakefile")], elsewhere) == here
    host = tmp_path / "host"
    host.mkdir()
    (host / "Snakefile").write_text(
        f"module rpc_wsss:\n    snakefile: {str(REPO / 'Snakefile')!r}\n    config: config\n"
        "use rule * from rpc_wsss as rpc_*\n"
    )
    assert _planned([], host) == {f"rpc_{rule}": n for rule, n in here.items()}


def test_lint_is_clean(tmp_path):
    proc = _run(["--lint"], _workdir(tmp_path), check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_dry_run_of_default_config_shows_the_whole_dag(tmp_path):
    jobs = _planned([], _workdir(tmp_path))
    assert set(jobs) == SYNTHETIC_RULES
    # 3 experiments x 1 seed, 2 shards of maps and pseudo masks each; DeepLab also on the ground truth; one
    # pretraining stage shared by every classifier and DeepLab
    assert jobs["rs_cams"] == jobs["pseudo_masks_shard"] == 6 and jobs["train_classifier"] == 3
    assert jobs["train_segmentation"] == 3 and jobs["train_segmentation_upper_bound"] == 1
    assert jobs["prepare_dataset"] == 1 and jobs["pretrain_backbone"] == 1
    assert jobs["eval_parts"] == 3
    # the evidence overlay: 5 seeds of everything, the ground-truth DeepLab included
    jobs = _planned(["--configfile", "config/seeds.yaml"], _workdir(tmp_path / "seeds"))
    assert jobs["rs_cams"] == 30 and jobs["train_classifier"] == 15 and jobs["train_segmentation"] == 15
    assert jobs["train_segmentation_upper_bound"] == 5


def _fake_voc(root: Path) -> Path:
    voc = root / "VOCdevkit" / "VOC2012"
    for d in ("JPEGImages", "SegmentationClass", "Annotations"):
        (voc / d).mkdir(parents=True)
    return voc


def _fake_coco(root: Path) -> Path:
    (root / "annotations").mkdir(parents=True)
    for split in ("train2014", "val2014"):
        (root / split).mkdir()
        (root / "annotations" / f"instances_{split}.json").write_text("{}")
    return root


@pytest.mark.parametrize("kind", ["voc", "coco"])
def test_dry_run_of_real_data_configs(tmp_path, kind):
    work = _workdir(tmp_path / "w")
    root = _fake_voc(tmp_path / "data") if kind == "voc" else _fake_coco(tmp_path / "data")
    jobs = _planned(
        ["--configfile", f"config/{kind}.yaml", "--config", f"dataset={{kind: {kind}, root: {root}}}"], work
    )
    assert set(jobs) == ALL_RULES
    shards = yaml.safe_load((REPO / "config" / f"{kind}.yaml").read_text())["cams"]["shards"]
    n_exp = 3 if kind == "voc" else 2  # one seed each
    assert jobs["rs_cams"] == shards * n_exp and jobs["train_segmentation"] == n_exp


@pytest.mark.parametrize(("kind", "root", "message"), [
    ("voc", None, "dataset.root is required for dataset.kind=voc"),
    ("voc", "/nonexistent/VOC", "no JPEGImages/ found"),
    ("coco", "/nonexistent/coco", "not a COCO 2014 folder, missing annotations/instances_train2014.json"),
])  # fmt: skip
def test_missing_or_malformed_root_is_a_clear_error(tmp_path, kind, root, message):
    work = _workdir(tmp_path)
    override = f"dataset={{kind: {kind}, root: {root or 'null'}}}"
    proc = _run(["-n", "--configfile", f"config/{kind}.yaml", "--config", override], work, check=False)
    assert proc.returncode != 0 and message in proc.stdout + proc.stderr


TINY = yaml.safe_load((REPO / "tests" / "tiny.yaml").read_text())  # also the chaos run's (benchmarks/chaos.py)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    work = _workdir(tmp_path_factory.mktemp("tiny"))
    (work / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    _run(["--cores", "2", "--configfile", "tiny.yaml"], work)
    return work


def test_tiny_end_to_end_run(tiny_run):
    res = tiny_run / "results"
    summary = json.loads((res / "summary.json").read_text())
    assert set(summary["runs"]) == {"rpc-s15", "ground_truth-s15"}
    row = summary["runs"]["rpc-s15"]
    for key in ("local_maps", "local_maps_irn", "crf", "crf_ignore", "seg_val", "seg_val_crf"):
        assert 0 < row[key] <= 100, (key, row)
    assert 0 <= row["uncertain_fraction"] < 1
    gt = summary["runs"]["ground_truth-s15"]
    assert gt["local_maps"] is None and 0 < gt["seg_val"] <= 100
    assert len(list((res / "rpc-s15" / "pseudo_masks" / "merged").glob("*.png"))) == 32
    assert len(list((res / "rpc-s15" / "figures" / "maps").glob("*.png"))) == 2
    md = (res / "summary.md").read_text()
    assert "| rpc |" in md and "Part-level evidence" in md and (res / "parts.png").is_file()
    parts = json.loads((res / "rpc-s15" / "parts.json").read_text())
    assert 0 <= parts["maps"]["sub_recall"] <= 1 and len(parts["stage_maps"]) == 2
    # the pretraining stage ran once and both the classifier and DeepLab started from its weights
    assert (res / "pretrain" / "backbone.pth").is_file()
    assert "results/pretrain/backbone.pth" in (tiny_run / "logs" / "rpc-s15" / "train_classifier.log").read_text()
    seg_log = (tiny_run / "logs" / "ground_truth-s15" / "train_segmentation.log").read_text()
    assert "results/pretrain/backbone.pth" in seg_log
    # the training checkpoints stay in work/ (the resume point), not among the results
    assert (tiny_run / "work" / "rpc-s15" / "classifier" / "last.pt").is_file()


def test_changing_crf_parameters_reruns_crf_and_after_not_training(tiny_run):
    assert _planned(["--configfile", "tiny.yaml"], tiny_run) == {}  # up to date
    (tiny_run / "crf40.yaml").write_text(yaml.safe_dump({"crf": {"bilateral_sxy": 40}}))
    jobs = _planned(["--configfile", "tiny.yaml", "crf40.yaml"], tiny_run)
    assert {"pseudo_masks_shard", "merge_pseudo_masks", "eval_pseudo_masks", "train_segmentation"} <= set(jobs)
    assert not {"train_classifier", "rs_cams", "eval_cams", "prepare_dataset", "pretrain_backbone"} & set(jobs)
    assert jobs["train_segmentation"] == 1 and "train_segmentation_upper_bound" not in jobs  # upper bound: unaffected


def test_pretraining_is_cached_across_benchmark_and_experiment_changes(tiny_run):
    (tiny_run / "other.yaml").write_text(yaml.safe_dump({
        "dataset": {"kind": "synthetic", "synthetic": {**TINY["dataset"]["synthetic"], "n_val": 10}},
        "experiments": {"rpc": {"preset": "rpc", "model": {"alpha": 0.6}}},
    }))  # fmt: skip
    # another dataset in the same folder is refused (it would replace the finished runs); another experiment
    # setting retrains the classifier, never the pretraining
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--configfile", "tiny.yaml", "other.yaml"],
                          cwd=tiny_run, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode != 0 and "holds the runs of another dataset" in proc.stdout + proc.stderr
    (tiny_run / "other.yaml").write_text(yaml.safe_dump({"experiments": {"rpc": {"preset": "rpc",
                                                                                  "model": {"alpha": 0.6}}}}))
    jobs = _planned(["--configfile", "tiny.yaml", "other.yaml"], tiny_run)
    assert "train_classifier" in jobs and "pretrain_backbone" not in jobs
    (tiny_run / "pre.yaml").write_text(yaml.safe_dump({"pretrain": {**TINY["pretrain"], "epochs": 2}}))
    assert "pretrain_backbone" in _planned(["--configfile", "tiny.yaml", "pre.yaml"], tiny_run)


def test_report_html(tiny_run):
    _run(["--cores", "1", "--configfile", "tiny.yaml", "--report", "report.html"], tiny_run)
    html = (tiny_run / "report.html").read_text(errors="ignore")
    assert "summary.md" in html and "figures" in html
    # the workflow graph's nodes ({"rule": ..., "fx": ...}): every rule once, the upper bound's under its own names
    nodes = re.findall(r'"rule":\s*"(\w+)",\s*"fx"', html)
    assert nodes and len(nodes) == len(set(nodes)), sorted(nodes)
    assert {"train_segmentation", "train_segmentation_upper_bound", "report_pages"} <= set(nodes)
    shutil.rmtree(tiny_run / ".snakemake" / "log", ignore_errors=True)


def test_profiles_dry_run(tmp_path):
    from test_profiles import profile_workdir

    work = profile_workdir(tmp_path)  # profiles/slurm with its placeholders filled in (left in, they stop the run)
    for profile in ("default", "slurm"):
        jobs = _planned(["--profile", f"profiles/{profile}"], work)
        assert set(jobs) == SYNTHETIC_RULES, profile


def _own_classes_folder(root: Path) -> Path:
    """A VOC-format folder with its own classes.txt (4 classes) and non-square images of varying size: the
    synthetic generator's output, cropped; labels from the masks (no Annotations)."""
    import numpy as np
    from PIL import Image

    from rpc.data.palette import read_mask, write_mask
    from rpc.data.synthetic import SyntheticSpec, generate_dataset

    voc = generate_dataset(SyntheticSpec(classes=("w", "x", "y", "z"), size=96, n_train=24, n_train_eval=12,
                                         n_val=6, seed=3), root)  # fmt: skip
    shutil.rmtree(voc / "Annotations")
    rng = np.random.default_rng(0)
    for jpg in sorted((voc / "JPEGImages").glob("*.jpg")):
        h, w = int(rng.choice([64, 80, 96])), int(rng.choice([72, 88, 96]))
        image = np.asarray(Image.open(jpg))[:h, :w]
        Image.fromarray(image).save(jpg, quality=95)
        mask = voc / "SegmentationClass" / f"{jpg.stem}.png"
        write_mask(mask, read_mask(mask)[:h, :w])
    return voc


def test_voc_format_folder_with_its_own_classes_runs_unchanged(tmp_path):
    work = _workdir(tmp_path / "w")
    voc = _own_classes_folder(tmp_path / "data")
    cfg = {**TINY, "dataset": {"kind": "voc", "root": str(voc)}, "model": {"depth": 18, "weights": "none"},
           "cams": {"scales": [1.0], "shards": 1}, "figures": {"count": 1},
           "segmentation": {**TINY["segmentation"], "upper_bound": False, "weights": "config"}}  # fmt: skip
    (work / "own.yaml").write_text(yaml.safe_dump(cfg))
    _run(["--cores", "2", "--configfile", "own.yaml"], work)
    summary = json.loads((work / "results" / "summary.json").read_text())
    assert summary["paper"] == {}  # not PASCAL VOC: no paper values beside the scores
    assert 0 < summary["runs"]["rpc-s15"]["seg_val"] <= 100
    assert "(60.5)" not in (work / "results" / "summary.md").read_text()
    seg_log = (work / "logs" / "rpc-s15" / "train_segmentation.log").read_text()
    assert "num_classes 7 -> 5 (from the dataset)" in seg_log


def test_paths_and_values_reach_the_shell_quoted(tmp_path, voc_root):
    """A dataset root with a space, a quote and a `;`, and option values with quotes: every command gets them as
    single arguments (prepare-voc really runs on it; the other commands are parsed from a dry run)."""
    import shlex

    work = _workdir(tmp_path / "w")
    root = tmp_path / "my data; it's" / "VOC2012"
    root.parent.mkdir()
    root.symlink_to(voc_root)
    option = "model.decode_head.init_cfg.note=\"it's; $HOME\""
    weights = tmp_path / "it's here.pth"  # a weights path must exist (the dry run checks it)
    weights.write_bytes(b"")
    overlay = {"dataset": {"kind": "voc", "root": str(root)},
               "experiments": {"rpc": {"preset": "rpc", "model": {"weights": str(weights)}}},
               "segmentation": {"options": [option]}}  # fmt: skip
    (work / "odd.yaml").write_text(yaml.safe_dump(overlay))
    args = ["--configfile", "config/voc.yaml", "odd.yaml"]
    _run(["--cores", "1", "results/data/prepared", *args], work)
    assert json.loads((work / "results/data/prepared/dataset.json").read_text())["image_dirs"]
    out = _run(["-n", "-p", "--forcerun", "prepare_dataset", *args], work).stdout
    commands = [shlex.split(line.split("python -m rpc", 1)[1]) for line in out.splitlines() if "python -m rpc" in line]
    prepare = next(c for c in commands if "prepare-voc" in c)
    assert prepare[prepare.index("--root") + 1] == str(root)
    train = next(c for c in commands if "train" in c and "work/rpc-s15/classifier" in c)
    assert f'model.weights="{weights}"' in train, train
    seg = next(c for c in commands if "seg-train" in c)
    assert seg[seg.index("--set") + 1] == option
    # a split name with a space and a command substitution: one argument everywhere, the title included
    (work / "split.yaml").write_text(yaml.safe_dump({"splits": {"val": "my val $(touch pwned)"}}))
    out = _run(["-n", "-p", *args, "split.yaml"], work).stdout
    commands = [shlex.split(line.split("python -m rpc", 1)[1]) for line in out.splitlines() if "python -m rpc" in line]
    scored = [c for c in commands if "eval-masks" in c and "--title" in c and "DeepLab" in " ".join(c)]
    assert scored and all(c[c.index("--split") + 1] == "my val $(touch pwned)" for c in scored)
    titles = {c[c.index("--title") + 1] for c in scored}  # one argument each, whatever order the jobs come in
    assert "DeepLab my val $(touch pwned): rpc-s15" in titles


def test_turning_tensorboard_on_reruns_nothing(tiny_run):
    assert _planned(["--configfile", "tiny.yaml", "--config", "tensorboard=True"], tiny_run) == {}


def test_imported_maps_run_through_the_same_stages(tiny_run):
    """Another method's maps (here: the rpc run's own maps exported in IRN's format) as a run of their own: imported,
    scored, through the CRF and DeepLab, in the summary. Their Local.Maps with IRN's constant background at 0.15 must
    equal the rpc run's IRN-convention score at that threshold (the same maps, the same convention)."""
    cams = sorted(str(p.relative_to(tiny_run)) for p in (tiny_run / "results" / "rpc-s15" / "cams").glob("shard_*"))
    export = subprocess.run([sys.executable, "-m", "rpc", "export-maps", "--cams", *cams, "--out", "irn_maps",
                             "--format", "irn"], cwd=tiny_run, capture_output=True, text=True)  # fmt: skip
    assert export.returncode == 0, export.stderr[-2000:]
    (tiny_run / "imported.yaml").write_text(yaml.safe_dump(
        {"imported_maps": {"irn_style": {"path": "irn_maps", "format": "irn", "bg_threshold": 0.15}}}))
    args = ["--configfile", "tiny.yaml", "imported.yaml"]
    jobs = _planned(args, tiny_run)
    assert jobs["import_maps"] == 2 and jobs["train_segmentation"] == 1  # two shards; DeepLab for the new run only
    assert not {"train_classifier", "rs_cams", "pretrain_backbone"} & set(jobs)
    _run(["--cores", "2", *args], tiny_run)
    res = tiny_run / "results"
    summary = json.loads((res / "summary.json").read_text())
    row = summary["runs"]["irn_style"]
    assert all(0 < row[k] <= 100 for k in ("local_maps", "crf", "seg_val")), row
    rpc_at_015 = 100 * json.loads((res / "rpc-s15" / "local_maps.json").read_text())["irn"]["sweep"]["0.15"]
    assert row["local_maps"] == pytest.approx(rpc_at_015, abs=0.3)
    assert "| irn_style (imported maps) |" in (res / "summary.md").read_text()
    assert "imported (irn)" in (res / "summary.md").read_text()  # what made the maps
    assert len(list((res / "irn_style" / "figures" / "maps").glob("*.png"))) == 2
    assert _planned(args, tiny_run) == {}
    # a map replaced in place by an older file (its modification time kept, as `cp -p` does): imported again
    first, second = sorted((tiny_run / "irn_maps").glob("*.npy"))[:2]
    shutil.copy2(first, second)
    jobs = _planned(args, tiny_run)
    assert jobs.get("import_maps") == 2 and "train_segmentation" in jobs and "train_classifier" not in jobs


def test_mmseg_target_writes_what_mmseg_loads(tiny_run):
    """`snakemake mmseg`: each DeepLab as config.py + checkpoint.pth, which mmseg's init_model opens."""
    from rpc.segmentation.compat import ensure_mmseg

    ensure_mmseg()
    from mmseg.apis import init_model

    # (the target first: --configfile takes every name after it)
    assert set(_planned(["mmseg", "--configfile", "tiny.yaml"], tiny_run)) == {"export_mmseg", "mmseg"}
    _run(["--cores", "2", "mmseg", "--configfile", "tiny.yaml"], tiny_run)
    folder = tiny_run / "results" / "rpc-s15" / "segmentation" / "mmseg"
    model = init_model(str(folder / "config.py"), str(folder / "checkpoint.pth"), device="cpu")
    assert model.dataset_meta["classes"][0] == "background"
    assert (tiny_run / "results" / "ground_truth-s15" / "segmentation" / "mmseg" / "checkpoint.pth").is_file()
