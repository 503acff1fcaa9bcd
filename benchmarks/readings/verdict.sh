#!/usr/bin/env bash
# The verdict of docs/method.md section 0 (the rule's second version), seed by seed, so that every finished seed
# is a usable result: phase 1 = maps, pseudo masks and Table 4's cells on the default benchmark and on the
# second benchmark (config/creatures.yaml) for each seed 15-19; phase 2 = DeepLab on the default benchmark; then
# the summaries over the five seeds. Each benchmark in a results folder of its own, from a frozen checkout:
#   benchmarks/readings/verdict.sh SRC RUNS
# SRC: a clone of the commit under test (its Snakefile and rpc/ are used); RUNS: where the two run folders go.
# SEEDS (default "15 16 17 18 19") and STEPS (default "default creatures deeplab summary") pick a part, in the
# order given, e.g. STEPS="creatures default" SEEDS="15 16" for both benchmarks' maps on two seeds first.
# bf16 pinned (benchmarks/readings/pins.yaml); the ground-truth upper bound is not retrained (it does not
# depend on the classifiers).
set -euo pipefail
src=$(realpath "$1"); runs=$(realpath -m "$2"); cores=${CORES:-2}
mkdir -p "$runs/default" "$runs/creatures" "$runs/cells"
export PATH="$src/.venv/bin:$PATH"  # the jobs' python
smk() { "$src/.venv/bin/snakemake" -s "$src/Snakefile" --cores "$cores" \
    --keep-going "$@"; }
overlay() {  # seeds and cells of one seed (or all), no upper bound
    local name=$1; shift
    python3 - "$src/benchmarks/readings/verdict_cells.yaml" "$runs/cells/$name.yaml" "$@" <<'PY'
import sys, yaml
spec = yaml.safe_load(open(sys.argv[1])); seeds = [int(s) for s in sys.argv[3:]]
spec["seeds"] = seeds
yaml.safe_dump(spec, open(sys.argv[2], "w"), sort_keys=False)
PY
    printf 'seeds: [%s]\nablations: %s\nsegmentation: {upper_bound: false}\n' \
        "$(IFS=,; echo "$*")" "$runs/cells/$name.yaml" > "$runs/cells/$name.overlay.yaml"
    echo "$runs/cells/$name.overlay.yaml"
}
pins=$src/benchmarks/readings/pins.yaml
seeds=${SEEDS:-15 16 17 18 19}
steps=${STEPS:-default creatures deeplab summary}
# a stopped run resumes where it was (finished outputs are kept)
for step in $steps; do
    case $step in
    default)  # maps, pseudo masks and the cells of each seed
        for seed in $seeds; do
            o=$(overlay "s$seed" "$seed")
            (cd "$runs/default" && smk --configfile "$pins" "$o" -- pseudo_masks ablations) \
                >> "$runs/default/phase1-s$seed.log" 2>&1
        done ;;
    creatures)
        for seed in $seeds; do
            o=$(overlay "s$seed" "$seed")
            (cd "$runs/creatures" && smk --configfile "$src/config/creatures.yaml" "$pins" "$o" -- pseudo_masks \
                ablations) >> "$runs/creatures/phase1-s$seed.log" 2>&1
        done ;;
    deeplab)  # DeepLab on the default benchmark
        for seed in $seeds; do
            o=$(overlay "s$seed" "$seed")
            (cd "$runs/default" && smk --configfile "$pins" "$o" -- segmentation) >> "$runs/default/phase2-s$seed.log" 2>&1
        done ;;
    summary)
        o=$(overlay all $seeds)
        (cd "$runs/default" && smk --configfile "$pins" "$o" -- all ablations) > "$runs/default/summary.log" 2>&1
        (cd "$runs/creatures" && smk --configfile "$src/config/creatures.yaml" "$pins" "$o" -- pseudo_masks ablations) \
            > "$runs/creatures/summary.log" 2>&1 ;;
    *) echo "verdict.sh: unknown step '$step' (default, creatures, deeplab or summary)" >&2; exit 2 ;;
    esac
done
echo "verdict done: $runs"
