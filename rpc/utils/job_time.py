"""A job's time limit (Snakemake's ``runtime`` resource, minutes; ``sbatch --time`` under profiles/slurm) from the
work it holds and measured rates, so that a job of VOC or COCO size asks for what it needs instead of one figure
for every dataset.

``minutes = attempt x HEADROOM x (START_S + units x seconds per unit / parallel) / 60``, at least ``FLOOR_MIN``:
a retried job (the profile's ``retries``) asks for twice the time. The rates and where they were measured are in
docs/speed.md, "Job time limits"; a rate scaled from another dataset's measurement is named there as such. GPU
rates are for one GPU; the CPU stages' per core (``parallel`` = the job's threads).
"""

from __future__ import annotations

import math

HEADROOM = 1.5  # the measured rate's spread between machines and images; a retry doubles it again
START_S = 300  # start-up: imports, loading the dataset index and the model, a CUDA context
FLOOR_MIN = 10
TRAIN_EPOCHS = 5  # rpc.engine.train.TrainConfig's default (a test keeps them equal): this module imports no torch

#: images of the standard splits, where the list file may not exist yet when the DAG is built
SPLIT_IMAGES = {
    "voc": {"train_aug": 10582, "train": 1464, "val": 1449},
    "coco": {"train2014": 82081, "val2014": 40137},
}
#: typical image area in megapixels (VOC about 500x375, COCO about 640x480)
IMAGE_MP = {"voc": 0.19, "coco": 0.31, "synthetic": 0.03}
#: present classes + background per image, the pseudo masks' CRF passes over these only
KEYS_PER_IMAGE = {"voc": 2.5, "coco": 3.9, "synthetic": 3.0}

#: seconds per unit on one GPU, at VOC's image size (RS-CAMs and predictions scale with the image area)
GPU_S = {
    "classifier": 1 / 151,  # per training image and epoch: R50 RPC, bf16, crop 512
    "maps": 1 / 5.2,  # per image: R50 RPC, 4 scales + flip (the slowest of the measured loader settings)
    "deeplab": 0.504,  # per iteration: R101, batch 10, 321x321, wall time
    "predict": 1 / 5.2,  # per image and scale: not measured; taken as a maps image (a deeper net, fewer passes)
}
#: seconds per core, per class channel and megapixel (the predictions' CRF refines every class): the scale
#: rehearsal's VOC and COCO runs (docs/speed.md)
CRF_S_PER_CLASS_MP = 0.28
#: seconds per core, per key and megapixel, both passes of the pseudo masks' CRF
PSEUDO_S_PER_KEY_MP = 0.50 / (2.5 * 0.15)


def minutes(seconds_of_work: float, parallel: int = 1, attempt: int = 1) -> int:
    """The limit for ``seconds_of_work`` (on one core or GPU) spread over ``parallel`` of them."""
    seconds = START_S + seconds_of_work / max(1, parallel)
    return max(FLOOR_MIN, math.ceil(attempt * HEADROOM * seconds / 60))


def split_images(kind: str, split: str, listed: int | None = None) -> int:
    """Images of ``split``: ``listed`` (the split list's line count, where it exists) or the standard count; an
    unknown split of an unknown size counts as VOC's ``train_aug``."""
    if listed is not None:
        return listed
    return SPLIT_IMAGES.get(kind, {}).get(split, SPLIT_IMAGES["voc"]["train_aug"])


def work_seconds(stage: str, kind: str, images: int = 0, *, epochs: float = 1, iterations: int = 0,
                 passes: int = 1, classes: int = 21) -> float:  # fmt: skip
    """Seconds of work of one job of ``stage`` on one GPU (model stages) or one core (CRF stages).

    ``images``: the job's images; ``epochs``: the classifier's passes over them; ``iterations``: DeepLab's;
    ``passes``: forwards per image (scales x flips) of the predictions; ``classes``: the dataset's, background
    included (the predictions' CRF)."""
    area = IMAGE_MP.get(kind, IMAGE_MP["voc"])
    scale = area / IMAGE_MP["voc"]
    if stage == "classifier":
        return images * epochs * GPU_S["classifier"]
    if stage == "maps":
        return images * GPU_S["maps"] * scale
    if stage == "deeplab":
        return iterations * GPU_S["deeplab"]
    if stage == "predict":
        return images * passes * GPU_S["predict"] * scale
    if stage == "crf_predictions":
        return images * classes * area * CRF_S_PER_CLASS_MP
    if stage == "pseudo_masks":
        return images * KEYS_PER_IMAGE.get(kind, 2.5) * area * PSEUDO_S_PER_KEY_MP
    raise ValueError(f"no rate for stage {stage!r}")
