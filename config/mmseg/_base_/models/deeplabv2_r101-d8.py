# DeepLabv2 (deeplab-pytorch): ResNet-101 at output stride 8 (dilations 2 and 4 in layer3/layer4), frozen
# BatchNorm, and the ASPP-L head = SUM of four 3x3 convs (dilations 6/12/18/24) straight to the classes.
# Initialisation: ImageNet weights from torchvision (the WSSS standard; no COCO pre-training, which would be
# extra supervision). Offline clusters: set model.backbone.init_cfg.checkpoint to a local resnet101 .pth file.
norm_cfg = dict(type="BN", requires_grad=False)
data_preprocessor = dict(type="SegDataPreProcessor", mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375],
                         bgr_to_rgb=True, pad_val=0, seg_pad_val=255, size=(321, 321))
model = dict(
    type="EncoderDecoder",
    data_preprocessor=data_preprocessor,
    backbone=dict(
        type="ResNet", depth=101, num_stages=4, out_indices=(3,), strides=(1, 2, 1, 1), dilations=(1, 1, 2, 4),
        norm_cfg=norm_cfg, norm_eval=True, style="pytorch", contract_dilation=False,
        init_cfg=dict(type="Pretrained", checkpoint="torchvision://resnet101"),
    ),
    decode_head=dict(
        type="DeepLabV2Head", in_channels=2048, in_index=0, dilations=(6, 12, 18, 24), num_classes=21,
        align_corners=False, ignore_index=255, loss_decode=dict(type="CrossEntropyLoss", use_sigmoid=False),
    ),
    train_cfg=dict(),
    test_cfg=dict(mode="whole"),
)
