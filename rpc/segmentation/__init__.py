"""DeepLabv2 on pseudo masks with mmsegmentation: compatibility set-up, the DeepLabv2 head, the dataset that reads
a prepared dataset + a mask folder, training, inference and evaluation. Import submodules explicitly; each one
that touches mmseg runs :func:`rpc.segmentation.compat.ensure_mmseg` first."""
