# Training data: images of a prepared dataset (rpc.data.index) with labels from a mask folder (pseudo masks).
# `python -m rpc seg-train` fills in dataset_dir, split and mask_dir. deeplab-pytorch augmentation: random
# scale 0.5-1.5, crop 321 (padded with ignore), horizontal flip. Interpretation: the scale is relative to a
# 500x500 box, i.e. to the original size for VOC (long side 500). Configs with other sizes redefine the
# pipeline (base variables do not propagate into lists already built here).
crop_size = (321, 321)
train_pipeline = [
    dict(type="LoadImageFromFile"),
    dict(type="LoadAnnotations"),
    dict(type="RandomResize", scale=(500, 500), ratio_range=(0.5, 1.5), keep_ratio=True),
    dict(type="RandomCrop", crop_size=crop_size, cat_max_ratio=1.0),
    dict(type="RandomFlip", prob=0.5),
    dict(type="PackSegInputs"),
]
train_dataloader = dict(
    batch_size=10,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type="InfiniteSampler", shuffle=True),
    dataset=dict(type="PreparedSegDataset", dataset_dir=None, split="train_aug", mask_dir=None,
                 pipeline=train_pipeline),
)
