"""Datasets: VOC, COCO and the synthetic VOC-format benchmark, all described by one ``DatasetIndex``; and the file
formats the stages exchange: masks (``rpc.data.palette``) and localisation maps (``rpc.data.maps``)."""
