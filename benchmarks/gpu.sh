#!/usr/bin/env bash
# One command for a GPU machine (about 8 minutes on one H100/H200): classifier training images/s at the paper's
# sizes (ResNet-50, crop 512, batch 16, VOC images, fp32 vs bf16 + channels-last) with the projected time of the
# paper's full VOC schedule, RS-CAM images/s (ResNet-50 RPC, 4 scales + flip; BN folded or not; the pyramid built
# by the loaders or on the GPU) with the achieved TFLOP/s beside the GPU's matmul and a 3x3 convolution's,
# DeepLabv2 R101 iterations/s. Prepared for issue 23; not yet run on a GPU after the BN folding and the device
# pyramid (no GPU was lent to those sessions).
# Results: benchmarks/out/*.json (copied to $OUT when set). Needs the real VOC samples (RPC_REALDATA).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
$PY -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name(0))"
status=0
$PY -m benchmarks.train --dataset voc --depth 50 --crop 512 --batch-size 16 --steps 20 --repeats 1 --workers 12 \
    || status=1
# maps: VOC images 4 times each (16 images of 4 sizes), bf16 and fp32, batch norm folded or not, the pyramid built
# by the loaders or on the GPU, side by side
$PY -m benchmarks.cams --depth 50 --images 4 --copies 4 --repeats 2 --modes fp32 bf16 --workers auto \
    --fold-bn off on --pyramid host device || status=1
# where a maps job's time goes on the GPU (start-up, loader wait, forwards, writing; torch.profiler tables)
$PY -m benchmarks.maps_profile --depth 50 --images 4 --copies 4 --workers 4 || status=1
# CRF pseudo masks on the GPU host's CPU cores
$PY -m benchmarks.crf --copies 4 --repeats 1 --workers 1 4 8 16 || status=1
$PY -m benchmarks.segmentation --dataset voc --iters 10 60 \
    --config config/mmseg/deeplabv2_r101-d8_1xb10-20k_voc12aug-321x321.py \
    --options model.backbone.init_cfg=None train_dataloader.num_workers=8 default_hooks.logger.interval=1 || status=1
if [ -n "${OUT:-}" ]; then cp benchmarks/out/*.json "$OUT"/ 2>/dev/null; fi
exit $status
