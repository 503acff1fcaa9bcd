"""The verdict table of benchmarks/readings/verdict.sh from its run folders: per benchmark and stage (Local.Maps,
pseudo masks, DeepLab val where present), each experiment's mean ± std over the seeds found and the paired
differences rpc − sipe, rpc − cam and SFA on − off (rpc − abl_rs) with 95 % Student-t intervals.

    python -m benchmarks.readings.verdict_table /work/verdict-runs/default /work/verdict-runs/creatures \\
        --seeds 15 16 17 18 19 --name verdict_rule2     (-> benchmarks/out/<name>.{json,md})
    python -m benchmarks.readings.verdict_table RUNS/default --seeds 17 \
        --earlier benchmarks/results/cpu_2026-12-07/verdict_rule2_seeds15-16.json --name verdict_rule2_seeds15-17
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from benchmarks.common import OUT, write_result
from rpc.evaluation.uncertainty import paired_comparison, t_interval

EXPERIMENTS = ("cam", "sipe", "rpc", "abl_rs", "abl_sfa")
PAIRS = (("rpc", "sipe"), ("rpc", "cam"), ("rpc", "abl_rs"), ("sipe", "cam"), ("abl_sfa", "sipe"))
STAGES = {"Local.Maps": ("local_maps.json", lambda d: d["sipe"]["miou"]),
          "pseudo masks (255 as background)": ("pseudo_masks.json", lambda d: d["miou"]),
          "DeepLab val": ("segmentation/val.json", lambda d: d["miou"])}  # fmt: skip


def scores(folder: Path, seeds: list[int]) -> dict:
    """``{stage: {experiment: [score per seed]}}`` for the experiments that have all ``seeds``."""
    out = {}
    for stage, (file, get) in STAGES.items():
        found = {}
        for e in EXPERIMENTS:
            paths = [folder / "results" / f"{e}-s{s}" / file for s in seeds]
            if all(p.is_file() for p in paths):
                found[e] = [100 * get(json.loads(p.read_text())) for p in paths]
        if found:
            out[stage] = found
    return out


def combined(earlier: dict, found: dict, has_earlier: bool) -> dict:
    """Per stage and experiment, the earlier seeds' scores then the new ones; an experiment missing from either
    (when there are earlier seeds) is left out, so that every list covers the same seeds."""
    if not has_earlier:
        return found
    out = {}
    for stage, now in found.items():
        before = earlier.get(stage, {}).get("scores", {})
        both = {e: before[e] + now[e] for e in now if e in before}
        if both:
            out[stage] = both
    return out


def table(name: str, stage_scores: dict) -> list[str]:
    lines = [f"### {name}", "", "| stage | " + " | ".join(EXPERIMENTS) + " | " +
             " | ".join(f"{a} − {b}" for a, b in PAIRS) + " |",
             "|---|" + "---:|" * (len(EXPERIMENTS) + len(PAIRS))]  # fmt: skip
    for stage, found in stage_scores.items():
        cells = []
        for e in EXPERIMENTS:
            spread = t_interval(found[e]) if e in found else None
            cells.append(f"{spread['mean']:.1f} ± {spread['std']:.1f}" if spread else "")
        for a, b in PAIRS:
            if a in found and b in found:
                c = paired_comparison(found[a], found[b])
                cells.append(f"{c['mean']:+.1f} [{c['low']:+.1f}, {c['high']:+.1f}] ({c['positive']}/{c['n']})")
            else:
                cells.append("")
        lines.append(f"| {stage} | " + " | ".join(cells) + " |")
    return lines + [""]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("folders", nargs="+", type=Path)
    p.add_argument("--seeds", nargs="+", type=int, required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--earlier", type=Path, help="a JSON this wrote for other seeds of the same benchmarks (folder "
                   "names), whose per-seed scores go first: the runs of those seeds need not be kept")  # fmt: skip
    a = p.parse_args()
    earlier = json.loads(a.earlier.read_text()) if a.earlier else {"seeds": [], "benchmarks": {}}
    seeds = earlier["seeds"] + a.seeds
    result, lines = {"seeds": seeds, "benchmarks": {}}, []
    for folder in a.folders:
        found = combined(earlier["benchmarks"].get(folder.name, {}), scores(folder, a.seeds), bool(earlier["seeds"]))
        result["benchmarks"][folder.name] = {
            stage: {"scores": f, "pairs": {f"{x} - {y}": paired_comparison(f[x], f[y]) for x, y in PAIRS
                                           if x in f and y in f}}
            for stage, f in found.items()}  # fmt: skip
        lines += table(f"{folder.name} (seeds {', '.join(map(str, seeds))})", found)
    write_result(a.name, result)
    (OUT / f"{a.name}.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
