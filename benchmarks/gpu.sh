#!/usr/bin/env bash
# One command for a GPU machine (under 10 minutes on one GPU): training images/s (bf16, channels-last) and RS-CAM
# images/s at the paper's sizes, DeepLabv2 R101 iterations/s. Results: benchmarks/out/*.json.
# Needs the real VOC samples (../shared/realdata or RPC_REALDATA) for VOC-sized images.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
nvidia-smi --query-gpu=name,memory.total --format=csv
# classifier: ResNet-50, crop 512, batch 16 (the paper's recipe), fp32 vs bf16 + channels-last
$PY -m benchmarks.train --depth 50 --crop 512 --batch-size 16 --steps 8 --repeats 2
# RS-CAMs: ResNet-50 RPC, VOC images, 4 scales + flip
$PY -m benchmarks.cams --depth 50 --images 10 --repeats 2
# DeepLabv2 ResNet-101, crop 321, batch 10 (VOC config; random init: no download needed)
$PY -m benchmarks.segmentation --dataset voc --iters 10 40 \
    --config config/mmseg/deeplabv2_r101-d8_1xb10-20k_voc12aug-321x321.py \
    --options model.backbone.init_cfg=None train_dataloader.num_workers=4
