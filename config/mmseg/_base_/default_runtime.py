# Runtime shared by the DeepLabv2 configs (mmseg conventions). `rpc` registers the DeepLabv2 head and the dataset
# that reads a prepared dataset + a pseudo-mask folder; importing them also applies rpc.segmentation.compat.
custom_imports = dict(imports=["rpc.segmentation.deeplabv2", "rpc.segmentation.dataset"], allow_failed_imports=False)
default_scope = "mmseg"
env_cfg = dict(cudnn_benchmark=True, mp_cfg=dict(mp_start_method="fork", opencv_num_threads=0),
               dist_cfg=dict(backend="nccl"))
log_processor = dict(by_epoch=False)
log_level = "INFO"
load_from = None
resume = False
randomness = dict(seed=0)
# no validation during training: `python -m rpc seg-predict` + `eval-masks` evaluate the final weights
val_dataloader = val_evaluator = val_cfg = None
test_dataloader = test_evaluator = test_cfg = None
