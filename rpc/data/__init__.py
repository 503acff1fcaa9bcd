"""Datasets: VOC, COCO and the synthetic VOC-format benchmark, all described by one ``DatasetIndex``."""
