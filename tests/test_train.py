import json

import pytest
import torch

from rpc.engine.checkpoint import load_model
from rpc.engine.config import build_configs
from rpc.engine.train import TrainConfig, TrainingDiverged, train_classifier
from rpc.models.rpc import make_config


def _cfg(**kw):
    base = dict(batch_size=4, epochs=1, crop=64, long_side=(64, 96), num_workers=0, log_interval=1,
                checkpoint_interval=100, lr=0.01, amp="none")  # fmt: skip
    return TrainConfig(**{**base, **kw})


def _model_cfg():
    return make_config("rpc", depth=18, weights="none")


def test_resume_equals_uninterrupted(tiny_synthetic, tmp_path):
    _, _, index = tiny_synthetic  # 24 train_aug images, batch 4 -> 6 steps per epoch
    full = train_classifier(index.root, tmp_path / "a", tmp_path / "a.pt", _model_cfg(), _cfg())
    assert full["step"] == 6
    half = train_classifier(index.root, tmp_path / "b", tmp_path / "b.pt", _model_cfg(), _cfg(max_steps=3))
    assert half["step"] == 3 and not (tmp_path / "b.pt").exists()  # stopped: no final model yet
    rest = train_classifier(index.root, tmp_path / "b", tmp_path / "b.pt", _model_cfg(), _cfg())
    assert rest["step"] == 6
    a, _, _ = load_model(tmp_path / "a.pt")
    b, _, _ = load_model(tmp_path / "b.pt")
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        torch.testing.assert_close(pa, pb, msg=name)
    # metrics: one JSON line per logged step, with each loss, images/s and lr
    lines = [json.loads(x) for x in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == [1, 2, 3, 4, 5, 6]
    assert {"cls", "aug", "gsc", "total", "images_per_s", "lr"} <= set(lines[0])
    assert lines[0]["lr"] == pytest.approx(0.01) and lines[-1]["lr"] < lines[0]["lr"]  # poly decay


def test_training_changes_weights_and_model_file_is_weights_only(tiny_synthetic, tmp_path):
    _, _, index = tiny_synthetic
    train_classifier(index.root, tmp_path / "w", tmp_path / "m.pt", _model_cfg(), _cfg(max_steps=None))
    ckpt = torch.load(tmp_path / "m.pt", weights_only=True)
    assert json.loads(ckpt["classes"]) == list(index.classes)
    model, cfg, _ = load_model(tmp_path / "m.pt")
    torch.manual_seed(15)
    fresh = type(model)(cfg)
    diff = (model.stages[0].classifier.weight - fresh.stages[0].classifier.weight).abs().max()
    assert diff > 0


def test_nan_loss_stops_with_clear_message_and_keeps_checkpoint(tiny_synthetic, tmp_path):
    _, _, index = tiny_synthetic
    train_classifier(index.root, tmp_path / "w", tmp_path / "m.pt", _model_cfg(), _cfg(max_steps=2))
    before = (tmp_path / "w" / "last.pt").read_bytes()
    with pytest.raises(TrainingDiverged, match="non-finite loss at step 3.*last good checkpoint"):
        train_classifier(index.root, tmp_path / "w", tmp_path / "m.pt", _model_cfg(), _cfg(lr=float("nan")))
    assert (tmp_path / "w" / "last.pt").read_bytes() == before
    assert not (tmp_path / "m.pt").exists()


def test_config_precedence_and_errors(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("model:\n  depth: 34\n  alpha: 0.5\ntrain:\n  epochs: 2\n")
    model, train = build_configs("rpc", str(f), ["model.alpha=0.6", "train.long_side=[10, 20]"])
    assert (model.depth, model.alpha, model.num_stages, train.epochs, train.long_side) == (34, 0.6, 2, 2, (10, 20))
    with pytest.raises(ValueError, match="unknown key"):
        build_configs("rpc", None, ["train.epoch=3"])
    with pytest.raises(ValueError, match="must look like"):
        build_configs("rpc", None, ["depth=3"])


def test_a_finished_run_is_not_resumed_by_a_new_training(tiny_synthetic, tmp_path):
    # Snakemake reruns a training only when its inputs or parameters changed: that must train afresh,
    # not "resume" the finished run (whose last.pt is already at the final step)
    _, _, index = tiny_synthetic
    first = train_classifier(index.root, tmp_path / "w", tmp_path / "m.pt", _model_cfg(), _cfg())
    assert (tmp_path / "w" / "COMPLETE").is_file()
    again = train_classifier(index.root, tmp_path / "w", tmp_path / "m2.pt", _model_cfg(), _cfg(lr=0.02))
    assert again["step"] == first["step"] == 6
    lines = [json.loads(x) for x in (tmp_path / "w" / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == [1, 2, 3, 4, 5, 6]  # a full second run, logged from step 1
    assert lines[0]["lr"] == pytest.approx(0.02)


def _finite_worker(rank, world, port, results):
    import os

    from rpc.engine.train import finite_on_all_ranks

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.distributed.init_process_group("gloo", rank=rank, world_size=world)
    try:
        loss = torch.tensor(float("nan") if rank == 1 else 1.0)  # only rank 1 diverges
        results[rank] = finite_on_all_ranks(loss, world)
        results[rank + 10] = finite_on_all_ranks(torch.tensor(2.0), world)
    finally:
        torch.distributed.destroy_process_group()


def test_non_finite_loss_is_agreed_across_ranks():
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    results = mp.Manager().dict()
    mp.spawn(_finite_worker, args=(2, port, results), nprocs=2, join=True)
    assert results[0] is False and results[1] is False  # rank 0 saw a finite loss but stops too
    assert results[10] is True and results[11] is True
