# DeepLabv2 ResNet-101 on VOC 2012 train_aug pseudo masks (paper Table 2; docs/method.md deeplab-pytorch settings).
_base_ = [
    "./_base_/models/deeplabv2_r101-d8.py",
    "./_base_/datasets/prepared_pseudo-321x321.py",
    "./_base_/schedules/sgd_poly-20k.py",
    "./_base_/default_runtime.py",
]
model = dict(decode_head=dict(num_classes=21))
