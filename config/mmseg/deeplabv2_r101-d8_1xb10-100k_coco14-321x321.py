# DeepLabv2 ResNet-101 on COCO 2014 train pseudo masks (paper Table 3): 81 classes, 100k iterations, lr 2e-4.
_base_ = [
    "./_base_/models/deeplabv2_r101-d8.py",
    "./_base_/datasets/prepared_pseudo-321x321.py",
    "./_base_/schedules/sgd_poly-20k.py",
    "./_base_/default_runtime.py",
]
base_lr = 2e-4
max_iters = 100000
model = dict(decode_head=dict(num_classes=81))
train_pipeline = [  # COCO images have long side 640: random scale relative to that box
    dict(type="LoadImageFromFile"),
    dict(type="LoadAnnotations"),
    dict(type="RandomResize", scale=(640, 640), ratio_range=(0.5, 1.5), keep_ratio=True),
    dict(type="RandomCrop", crop_size=(321, 321), cat_max_ratio=1.0),
    dict(type="RandomFlip", prob=0.5),
    dict(type="PackSegInputs"),
]
train_dataloader = dict(dataset=dict(split="train2014", pipeline=train_pipeline))
optim_wrapper = dict(optimizer=dict(lr=base_lr))
param_scheduler = [dict(type="PolyLR", power=0.9, eta_min=0.0, begin=0, end=max_iters, by_epoch=False)]
train_cfg = dict(type="IterBasedTrainLoop", max_iters=max_iters)
