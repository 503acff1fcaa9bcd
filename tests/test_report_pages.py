"""The report's HTML tables and plots, and the training logs they read."""

import json

from rpc.evaluation.report_pages import markdown_to_html, plot_curves, plot_local_maps, plot_segmentation
from rpc.utils.train_log import publish_train_log, read_jsonl

MD = """# Summary

Dataset: synthetic. **mIoU** (%), `train` split <b>.

| | Local.Maps | DeepLab val |
|---|---:|---:|
| rpc | 55.8 ± 1.0 | 34.4 |
| sipe | 53.1 | - |

- rpc > sipe: not resolved at 95%
  (continued line).
- second item
"""


def test_markdown_tables_become_html_tables_and_nothing_is_interpreted_as_html():
    page = markdown_to_html(MD, "Summary <x>")
    assert "<title>Summary &lt;x&gt;</title>" in page and "<h1>Summary</h1>" in page
    assert "<strong>mIoU</strong>" in page and "<code>train</code>" in page and "&lt;b&gt;" in page  # <b> escaped
    compact = page.replace("\n", "")
    right = '<th style="text-align:right">'
    assert f"<tr><th></th>{right}Local.Maps</th>{right}DeepLab val</th></tr>" in compact
    assert '<tr><td>rpc</td><td style="text-align:right">55.8 ± 1.0</td>' in compact
    assert page.count("<tr>") == 3 and "---" not in page
    assert "<li>rpc &gt; sipe: not resolved at 95%(continued line).</li><li>second item</li>" in compact


def test_a_resumed_training_log_has_one_record_per_step_without_timings(tmp_path):
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    first.write_text('{"step": 10, "loss": 1.0, "time": 0.5}\n{"step": 20, "loss": 0.9, "time": 0.5}\n{"step": 3')
    second.write_text('{"step": 20, "loss": 0.8, "time": 0.4}\n{"step": 30, "loss": 0.7, "time": 0.4}\n')
    merged = publish_train_log(read_jsonl([first, second]), tmp_path / "log.json", drop=("time",))
    assert merged == [{"step": 10, "loss": 1.0}, {"step": 20, "loss": 0.8}, {"step": 30, "loss": 0.7}]
    assert json.loads((tmp_path / "log.json").read_text()) == merged


def test_the_plots_are_written_from_the_runs_files_and_are_reproducible(tmp_path):
    for run, offset in (("rpc-s15", 0.0), ("sipe-s15", 0.1)):
        (tmp_path / run / "segmentation").mkdir(parents=True)
        log = [{"step": s, "total": 1 - s / 100 + offset, "cls": 0.5, "lr": 0.05 * (1 - s / 100)} for s in (10, 20)]
        (tmp_path / run / "train_log.json").write_text(json.dumps(log))
        (tmp_path / run / "segmentation" / "train_log.json").write_text(json.dumps([{"step": 10, "loss": 1.0}]))
        iou = {"background": 0.9, "a": 0.5 + offset, "b": None}
        sweep = {"0.00": 0.2, "0.05": 0.3 + offset}
        (tmp_path / run / "local_maps.json").write_text(
            json.dumps(
                {
                    "sipe": {
                        "per_class_iou": iou,
                        "miou": 0.5 + offset,
                        "confusion": [[9, 1, 0], [2, 8, 0], [0, 0, 0]],
                    },
                    "irn": {"sweep": sweep},
                }
            )
        )
        (tmp_path / run / "segmentation" / "val.json").write_text(json.dumps(
            {"per_class_iou": iou, "miou": 0.6 + offset, "confusion": [[9, 1, 0], [2, 8, 0], [0, 0, 0]]}))
    (tmp_path / "ground_truth-s15" / "segmentation").mkdir(parents=True)  # the upper bound: DeepLab files only
    (tmp_path / "ground_truth-s15" / "segmentation" / "val.json").write_text(json.dumps(
        {"per_class_iou": {"background": 0.95, "a": 0.9, "b": None}, "miou": 0.9,
         "confusion": [[10, 0, 0], [1, 9, 0], [0, 0, 0]]}))  # fmt: skip
    runs = ["rpc-s15", "sipe-s15", "ground_truth-s15"]
    plot_curves(tmp_path, runs, tmp_path / "c1.png")
    plot_curves(tmp_path, runs, tmp_path / "c2.png")
    plot_local_maps(tmp_path, runs, tmp_path / "m.png")
    plot_segmentation(tmp_path, runs, tmp_path / "s1.png")
    plot_segmentation(tmp_path, runs, tmp_path / "s2.png")
    assert (tmp_path / "c1.png").read_bytes() == (tmp_path / "c2.png").read_bytes()
    assert (tmp_path / "s1.png").read_bytes() == (tmp_path / "s2.png").read_bytes()
    assert (tmp_path / "m.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_mask_scores_carry_their_confusion_matrix(tiny_synthetic, tmp_path):
    """The DeepLab plot's confusion comes from the scores: rows = ground truth, columns = predicted label."""
    import numpy as np

    from rpc.data.palette import write_mask
    from rpc.evaluation.masks import evaluate_mask_dir

    _, _, index = tiny_synthetic
    names = index.names("val")
    for name in names:  # everything predicted as background
        write_mask(tmp_path / f"{name}.png", np.zeros_like(index.read_mask(name)))
    result = evaluate_mask_dir(index, "val", tmp_path)
    matrix = np.array(result["confusion"])
    gt_pixels = sum(np.bincount(index.read_mask(n).ravel(), minlength=256)[: index.num_classes] for n in names)
    assert (matrix[:, 1:] == 0).all() and (matrix[:, 0] == gt_pixels).all()
