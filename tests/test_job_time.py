"""Job time limits from the work and the measured rates (rpc/utils/job_time.py): the formula's values. What the
real configs' jobs ask for under profiles/slurm: tests/test_profiles.py."""

from __future__ import annotations

import math

import pytest

from rpc.utils import job_time


def test_minutes_are_the_work_with_headroom_and_a_retry_doubles_them():
    assert job_time.minutes(0) == job_time.FLOOR_MIN
    work = 3600.0
    one = job_time.minutes(work)
    assert one == math.ceil(job_time.HEADROOM * (job_time.START_S + work) / 60)
    assert job_time.minutes(work, attempt=2) == math.ceil(2 * job_time.HEADROOM * (job_time.START_S + work) / 60)
    assert job_time.minutes(work, parallel=8) < one  # a CPU stage's threads share the work


def test_stage_rates_scale_with_what_they_depend_on():
    w = job_time.work_seconds
    assert w("deeplab", "voc", iterations=20000) == pytest.approx(20000 * job_time.GPU_S["deeplab"])
    assert w("classifier", "voc", 1000, epochs=5) == pytest.approx(5 * w("classifier", "voc", 1000, epochs=1))
    # the predictions' CRF: proportional to the classes and the image area
    voc, coco = w("crf_predictions", "voc", 100, classes=21), w("crf_predictions", "coco", 100, classes=81)
    assert coco / voc == pytest.approx(81 / 21 * job_time.IMAGE_MP["coco"] / job_time.IMAGE_MP["voc"])
    assert w("predict", "voc", 10, passes=3) == pytest.approx(3 * w("predict", "voc", 10, passes=1))
    with pytest.raises(ValueError, match="no rate for stage 'report'"):
        w("report", "voc", 1)


def test_split_sizes_come_from_the_list_where_it_exists():
    assert job_time.split_images("coco", "val2014") == 40137
    assert job_time.split_images("coco", "val2014", listed=43) == 43
    assert job_time.split_images("voc", "my_split") == 10582  # unknown: counted as train_aug


def test_the_epoch_default_is_the_classifiers():
    from rpc.engine.train import TrainConfig

    assert job_time.TRAIN_EPOCHS == TrainConfig().epochs
