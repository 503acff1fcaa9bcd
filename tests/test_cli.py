"""The command line's own contract: every command and option documented, the grouped top-level help, one
override syntax (``--set``) with the older spellings as aliases, and errors that name the flag."""

import argparse
import re

import pytest

from rpc.cli import build_parser, main
from rpc.cli.segmentation import image_files
from rpc.utils.io import DataError

GROUP_TITLES = ["data", "classifier", "maps", "pseudo masks", "segmentation", "evaluation", "watching a run",
                "workflow internals"]
EXPECTED = {
    "data": ["synth", "prepare-voc", "prepare-coco"],
    "classifier": ["pretrain", "train", "export-backbone"],
    "maps": ["cams", "export-maps", "import-maps"],
    "pseudo masks": ["pseudo-masks"],
    "segmentation": ["seg-train", "seg-predict", "seg-crf", "segment", "export-mmseg"],
    "evaluation": ["eval-cams", "eval-masks", "eval-parts", "figures", "ablation-tables"],
    "watching a run": ["progress"],
    "workflow internals": ["summary", "report-pages", "merge-dirs", "unlock-stale", "compare-results", "clean-work"],
}


def _commands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def test_every_command_and_option_has_help_and_a_description():
    commands = _commands(build_parser())
    assert len(commands) == 27
    missing = []
    for name, parser in commands.items():
        if not (getattr(parser, "summary", "") or "").strip():
            missing.append(f"{name}: no one-line help")
        elif not (parser.description or "").strip() or parser.summary[1:] not in parser.description:
            missing.append(f"{name}: no description beginning with its one-line help")
        for action in parser._actions:
            if "-h" in action.option_strings:
                continue
            if not (action.help or "").strip() or action.help is argparse.SUPPRESS:
                missing.append(f"{name} {'/'.join(action.option_strings) or action.dest}: no help")
    assert not missing, missing


def test_help_pages_show_only_meaningful_defaults():
    commands = _commands(build_parser())
    for name, parser in commands.items():
        text = parser.format_help()
        assert "(default: None)" not in text and "(default: False)" not in text, name
        assert "(default: [])" not in text and "==SUPPRESS==" not in text, name
    assert "(default: 1.0 0.5 1.5 2.0)" in commands["cams"].format_help()


def test_top_level_help_lists_the_groups_in_pipeline_order_and_every_command_once():
    parser = build_parser()
    text = parser.format_help()
    assert "Parsing only" not in text and "weakly supervised semantic segmentation" in " ".join(text.split())
    starts = [text.index(f"\n{title}:\n") for title in GROUP_TITLES]
    assert starts == sorted(starts)
    ends = [*starts[1:], text.index("\npositional arguments:")]
    listed = {title: re.findall(r"^  (\S+) ", text[start:end], flags=re.MULTILINE)
              for title, start, end in zip(GROUP_TITLES, starts, ends, strict=True)}  # fmt: skip
    assert listed == EXPECTED
    assert sorted(sum(listed.values(), [])) == sorted(_commands(parser))  # every command, each once
    for name, command in _commands(parser).items():  # with its one-line help
        assert re.search(rf"^  {re.escape(name)} +{re.escape(command.summary.split()[0])}", text, re.MULTILINE)


@pytest.mark.parametrize(
    "argv, alias",
    [
        (["pseudo-masks", "--dataset", "d", "--split", "s", "--cams", "c", "--out", "o"], "--param"),
        (["seg-predict", "--model", "m", "--dataset", "d", "--split", "s", "--out", "o"], "--crf-param"),
        ("seg-train --config c --dataset d --split s --masks m --work w --out o".split(), "--cfg-options"),
    ],
)
def test_old_override_spellings_are_aliases_of_set(argv, alias):
    parser = build_parser()
    new = parser.parse_args([*argv, "--set", "bilateral_sxy=40", "iterations=5"])
    old = parser.parse_args([*argv, alias, "bilateral_sxy=40", "iterations=5"])
    assert new.set == old.set == ["bilateral_sxy=40", "iterations=5"]
    assert parser.parse_args(argv).set is None


def test_set_on_every_command_that_takes_overrides():
    commands = _commands(build_parser())
    for name in ("train", "pretrain", "pseudo-masks", "seg-predict", "seg-crf", "seg-train"):
        assert "--set" in commands[name]._option_string_actions, name


def test_segment_expands_folders_to_their_images(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("b.png", "a.jpg", "c.JPEG", "notes.txt"):
        (folder / name).write_bytes(b"")
    (folder / "sub.png").mkdir()  # a folder with an image's name is no image
    single = tmp_path / "single.jpg"
    single.write_bytes(b"")
    assert image_files([str(single), str(folder)]) == [
        str(single), str(folder / "a.jpg"), str(folder / "b.png"), str(folder / "c.JPEG")]  # fmt: skip


def test_segment_refuses_an_empty_folder_and_a_missing_path(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match=re.escape(str(empty))):
        image_files([str(empty)])
    with pytest.raises(DataError, match=re.escape(str(tmp_path / "nothere.jpg"))):
        image_files([str(tmp_path / "nothere.jpg")])
    # through the command line: exit status 2 before any model is read
    assert main(["segment", str(empty), "--model", str(tmp_path / "no_model.pt"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert str(empty) in err and "no_model" not in err


def test_import_maps_irn_without_threshold_names_the_flag(tmp_path, capsys):
    src = tmp_path / "does_not_exist"  # the check comes before any file is read
    argv = ["import-maps", "--src", str(src), "--out", str(tmp_path / "out"), "--format", "irn"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "--bg-threshold" in err and "import-maps --format irn" in err and str(src) not in err
    assert not (tmp_path / "out").exists()


def test_a_bad_crf_setting_names_the_command_and_option(tmp_path, capsys):
    argv = ["pseudo-masks", "--dataset", str(tmp_path), "--split", "train", "--cams", str(tmp_path), "--out",
            str(tmp_path / "o"), "--param", "sxy=3"]  # fmt: skip
    assert main(argv) == 2
    assert "pseudo-masks --set: CRF parameter 'sxy=3'" in capsys.readouterr().err


@pytest.mark.parametrize("command, setting, line", [
    ("pseudo-masks", "bilateral_sxy=abc", "pseudo-masks --set: bilateral_sxy: 'abc' is not of type 'number'"),
    ("pseudo-masks", "iterations=2.5", "pseudo-masks --set: iterations: 2.5 is not of type 'integer'"),
    ("seg-predict", "bilateral_sxy=-1",
     "seg-predict --set: bilateral_sxy: -1 is less than or equal to the minimum of 0; allowed: a number > 0"),
    ("seg-predict", "iterations=0",
     "seg-predict --set: iterations: 0 is less than the minimum of 1; allowed: an integer from 1 to 1000"),
    ("seg-crf", "gauss_sxy=0",
     "seg-crf --set: gauss_sxy: 0 is less than or equal to the minimum of 0; allowed: a number > 0"),
])  # fmt: skip
def test_a_crf_value_of_the_wrong_type_or_range_names_the_key(tmp_path, capsys, command, setting, line):
    """The CRF commands' ``--set`` values are typed and bounded by the config schema's ``crf`` section, before any
    file is read: one line naming the key and what it allows."""
    given = {"pseudo-masks": ["--cams", str(tmp_path)], "seg-predict": ["--model", str(tmp_path / "m.pt")],
             "seg-crf": ["--scores", str(tmp_path)]}[command]
    argv = [command, "--dataset", str(tmp_path), "--split", "train", *given, "--out", str(tmp_path / "o"),
            "--set", setting]  # fmt: skip
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.err == f"error: {line}\n" and not captured.out
    assert not (tmp_path / "o").exists()


def test_crf_settings_are_typed_as_the_parameters():
    from rpc.cli.masks import crf_params
    from rpc.models.dense_crf import PSEUDO_MASK_CRF

    p = crf_params("pseudo-masks", ["bilateral_sxy=40", "iterations=5", "gt_prob=5e-1"], PSEUDO_MASK_CRF)
    assert (p.bilateral_sxy, p.iterations, p.gt_prob) == (40.0, 5, 0.5)
    assert type(p.bilateral_sxy) is float and type(p.iterations) is int
    assert crf_params("pseudo-masks", None, PSEUDO_MASK_CRF) == PSEUDO_MASK_CRF
