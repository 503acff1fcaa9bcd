#!/usr/bin/env bash
# Every GPU measurement of the speed issue, for one H100/H200 machine, in two parts that each fit one 10-minute
# call (both: `benchmarks/gpu.sh`; one: `benchmarks/gpu.sh 1` or `benchmarks/gpu.sh 2`):
#   1. classifier training images/s at the paper's sizes (ResNet-50, crop 512, batch 16, VOC images, fp32 vs
#      bf16 + channels-last); RS-CAM images/s (ResNet-50 RPC, 4 scales + flip; BN folded or not; the pyramid built
#      by the loaders or on the GPU) with the achieved TFLOP/s beside the GPU's matmul and a 3x3 convolution's;
#      where a maps job's time goes (torch.profiler tables).
#   2. CRF pseudo masks on the host's CPU cores (1 to 16 workers); DeepLabv2 R101 s/iteration in fp32 and in bf16
#      (mmengine's AmpOptimWrapper) and its predictions' speed with their CRF; then the projected wall time of the
#      full VOC pipeline for one method (benchmarks.voc_projection, which needs both parts' JSON: on a fresh
#      machine for part 2, run it afterwards with --dir pointing at both parts' results).
# Prepared for issue 23; not yet run on a GPU since the BN folding, the device pyramid and DeepLab's bf16 (no GPU
# was lent to those sessions). Results: benchmarks/out/*.json (copied to $OUT when set). Needs the real VOC
# samples (RPC_REALDATA).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
PART=${1:-all}
case "$PART" in all | 1 | 2) ;; *) echo "usage: benchmarks/gpu.sh [1|2] (no argument: both parts)" >&2; exit 2 ;; esac
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
$PY -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name(0))"
status=0
if [ "$PART" = all ] || [ "$PART" = 1 ]; then
    $PY -m benchmarks.train --dataset voc --depth 50 --crop 512 --batch-size 16 --steps 20 --repeats 1 \
        --workers 12 || status=1
    # VOC images 4 times each (16 images of 4 sizes), side by side
    $PY -m benchmarks.cams --depth 50 --images 4 --copies 4 --repeats 2 --modes fp32 bf16 --workers auto \
        --fold-bn off on --pyramid host device --save-stages || status=1
    $PY -m benchmarks.maps_profile --depth 50 --images 4 --copies 4 --workers 4 || status=1
fi
if [ "$PART" = all ] || [ "$PART" = 2 ]; then
    $PY -m benchmarks.crf --copies 4 --repeats 1 --workers 1 4 8 16 || status=1
    # s/iteration from the wall-time difference of the two runs (logging every 10 iterations; the VOC config: 50)
    $PY -m benchmarks.segmentation --dataset voc --iters 10 60 --amps none bf16 --crf-workers 16 \
        --config config/mmseg/deeplabv2_r101-d8_1xb10-20k_voc12aug-321x321.py \
        --options model.backbone.init_cfg=None train_dataloader.num_workers=8 default_hooks.logger.interval=10 \
        || status=1
    if [ -f benchmarks/out/train_r50.json ] && [ -f benchmarks/out/cams_r50.json ]; then
        $PY -m benchmarks.voc_projection || status=1
    else
        echo "voc_projection not run: part 1's JSON is not in benchmarks/out/ (run it here, or run" \
             "python -m benchmarks.voc_projection --dir <both parts' JSON> afterwards)" >&2
    fi
fi
if [ -n "${OUT:-}" ]; then cp benchmarks/out/*.json "$OUT"/ 2>/dev/null; fi
exit $status
