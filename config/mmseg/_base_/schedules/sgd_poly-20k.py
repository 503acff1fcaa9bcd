# deeplab-pytorch VOC schedule: SGD momentum 0.9, weight decay 5e-4, lr 2.5e-4, poly 0.9, 20k iterations.
# Head weights 10x lr; head biases 20x lr without weight decay (mmengine matches the longest key first).
base_lr = 2.5e-4
max_iters = 20000
optim_wrapper = dict(
    type="OptimWrapper",
    optimizer=dict(type="SGD", lr=base_lr, momentum=0.9, weight_decay=5e-4),
    paramwise_cfg=dict(custom_keys={
        "decode_head": dict(lr_mult=10.0),
        **{f"decode_head.aspp.{i}.bias": dict(lr_mult=20.0, decay_mult=0.0) for i in range(4)},
    }),
)
param_scheduler = [dict(type="PolyLR", power=0.9, eta_min=0.0, begin=0, end=max_iters, by_epoch=False)]
train_cfg = dict(type="IterBasedTrainLoop", max_iters=max_iters)
default_hooks = dict(
    timer=dict(type="IterTimerHook"),
    logger=dict(type="LoggerHook", interval=50, log_metric_by_epoch=False),
    param_scheduler=dict(type="ParamSchedulerHook"),
    # periodic checkpoints go to the work folder (resume point); only the newest is kept
    checkpoint=dict(type="CheckpointHook", by_epoch=False, interval=2000, max_keep_ckpts=1),
    sampler_seed=dict(type="DistSamplerSeedHook"),
)
