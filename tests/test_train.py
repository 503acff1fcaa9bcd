import json
import shutil

import pytest
import torch

from rpc.engine.config import build_configs
from rpc.engine.train import TrainConfig, TrainingDiverged, classifier_settings, train_classifier
from rpc.models.checkpoint import load_model
from rpc.models.rpc import RPCModel, make_config
from rpc.utils.io import DataError
from rpc.utils.workdir import settings_hash


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models: one thread is as fast, and much faster when the machine is busy."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _cfg(**kw):
    base = dict(batch_size=4, epochs=1, crop=64, long_side=(64, 96), num_workers=0, log_interval=1,
                checkpoint_interval=100, lr=0.01, amp="none")  # fmt: skip
    return TrainConfig(**{**base, **kw})


def _model_cfg():
    return make_config("rpc", depth=18, weights="none")


def _assert_same_weights(a_path, b_path):
    a, _, _ = load_model(a_path)
    b, _, _ = load_model(b_path)
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        torch.testing.assert_close(pa, pb, msg=name)


def test_resume_equals_uninterrupted(tiny_synthetic, tmp_path, logs):
    _, _, index = tiny_synthetic  # 24 train_aug images, batch 4 -> 6 steps per epoch
    full = train_classifier(index.root, tmp_path / "a", tmp_path / "a.pt", _model_cfg(), _cfg())
    assert full["step"] == 6
    half = train_classifier(index.root, tmp_path / "b", tmp_path / "b.pt", _model_cfg(), _cfg(max_steps=3))
    assert half["step"] == 3 and not (tmp_path / "b.pt").exists()  # stopped: no final model yet
    logs.read()
    # same settings (max_steps, num_workers, log_interval do not change the result): resumes
    rest = train_classifier(index.root, tmp_path / "b", tmp_path / "b.pt", _model_cfg(), _cfg(log_interval=2))
    assert rest["step"] == 6
    out = logs.read()
    assert "resumed from" in out and "at step 3/6" in out and "starting afresh" not in out
    _assert_same_weights(tmp_path / "a.pt", tmp_path / "b.pt")
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


def test_tensorboard_logging_holds_the_logged_records(tiny_synthetic, tmp_path):
    """The optional TensorBoard events carry the same values, per step, as metrics.jsonl."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    _, _, index = tiny_synthetic
    train_classifier(index.root, tmp_path / "w", tmp_path / "m.pt", _model_cfg(), _cfg(max_steps=3), tensorboard=True)
    lines = [json.loads(x) for x in (tmp_path / "w" / "metrics.jsonl").read_text().splitlines()]
    events = EventAccumulator(str(tmp_path / "w" / "tensorboard")).Reload()
    assert {"classifier/total", "classifier/cls", "classifier/lr"} <= set(events.Tags()["scalars"])
    for key in ("total", "cls", "lr"):
        logged = [(e.step, e.value) for e in events.Scalars(f"classifier/{key}")]
        assert logged == [(x["step"], pytest.approx(x[key], rel=1e-6)) for x in lines], key


def test_tensorboard_missing_is_a_clear_error_before_training(tiny_synthetic, tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_tensorboard(name, *args, **kwargs):
        if name == "tensorboard" or name.startswith("tensorboard."):
            raise ImportError("No module named 'tensorboard'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    _, _, index = tiny_synthetic
    with pytest.raises(RuntimeError, match="pip install tensorboard"):
        train_classifier(index.root, tmp_path / "w", tmp_path / "m.pt", _model_cfg(), _cfg(), tensorboard=True)
    assert not (tmp_path / "w").exists()  # nothing started


def test_nan_loss_stops_with_clear_message_and_keeps_checkpoint(tiny_synthetic, tmp_path, monkeypatch):
    _, _, index = tiny_synthetic
    train_classifier(index.root, tmp_path / "w", tmp_path / "m.pt", _model_cfg(), _cfg(max_steps=2))
    before = (tmp_path / "w" / "last.pt").read_bytes()
    original = RPCModel.losses

    def diverging(self, out, labels):  # the resumed run's second step diverges
        losses = original(self, out, labels)
        diverging.calls += 1
        return {**losses, "total": losses["total"] * float("nan")} if diverging.calls == 2 else losses

    diverging.calls = 0
    monkeypatch.setattr(RPCModel, "losses", diverging)
    with pytest.raises(TrainingDiverged, match="non-finite loss at step 3.*last good checkpoint"):
        train_classifier(index.root, tmp_path / "w", tmp_path / "m.pt", _model_cfg(), _cfg())
    assert (tmp_path / "w" / "last.pt").read_bytes() == before
    assert not (tmp_path / "m.pt").exists()


def test_config_precedence_and_errors(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("model:\n  depth: 34\n  alpha: 0.5\ntrain:\n  epochs: 2\n")
    model, train = build_configs("rpc", str(f), ["model.alpha=0.6", "train.long_side=[20, 30]"])
    assert (model.depth, model.alpha, model.num_stages, train.epochs, train.long_side) == (34, 0.6, 2, 2, (20, 30))
    with pytest.raises(ValueError, match="unknown key"):
        build_configs("rpc", None, ["train.epoch=3"])
    with pytest.raises(ValueError, match="must look like"):
        build_configs("rpc", None, ["depth=3"])


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.lr=abc", "train config: lr: 'abc' is not of type 'number'"),
        ("train.epochs=2.5", "epochs: 2.5 is not of type 'integer'"),
        ("train.epochs=true", "epochs: True is not of type 'integer'"),
        ("train.long_side=[20, 30, 40]", r"long_side: \[20, 30, 40\] is too long"),
        ("model.layers=[3, x]", r"model config: layers\[1\]: 'x' is not of type 'integer'"),
        ("model.attention=foo", "attention: 'foo' is not one of"),
        ("train.max_steps=ten", "max_steps: 'ten' is not of type 'integer', 'null'"),
    ],
)
def test_overrides_of_the_wrong_type_are_data_errors_naming_the_key(override, message):
    with pytest.raises(DataError, match=message):
        build_configs("rpc", None, [override])


def test_overrides_are_converted_to_the_field_types():
    model, train = build_configs("rpc", None, ["train.lr=1", "model.layers=[3, 4]", "train.max_steps=null"])
    assert type(train.lr) is float and model.layers == (3, 4) and train.max_steps is None


def test_a_bad_override_on_the_command_line_is_one_line_and_exit_code_2(capsys):
    from rpc.cli import main

    assert main(["train", "--dataset", "x", "--work", "w", "--out", "y", "--set", "train.lr=abc"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: train config: lr: 'abc' is not of type 'number'"


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


def test_rerun_with_other_settings_starts_afresh(tiny_synthetic, tmp_path, logs):
    # a run on a 2-epoch schedule (batch 8: 3 steps per epoch) stopped at step 2; the rerun asks for 1 epoch at
    # another lr: it must train those 3 steps from scratch, not "resume at step 2/3" on a mixed schedule
    _, _, index = tiny_synthetic
    first = _cfg(batch_size=8, epochs=2, max_steps=2)
    train_classifier(index.root, tmp_path / "w", tmp_path / "m.pt", _model_cfg(), first)
    logs.read()
    other = _cfg(batch_size=8, epochs=1, lr=0.02)
    again = train_classifier(index.root, tmp_path / "w", tmp_path / "m.pt", _model_cfg(), other)
    out = logs.read()
    assert "was started with other settings" in out and "starting afresh" in out and "resumed from" not in out
    fresh = train_classifier(index.root, tmp_path / "f", tmp_path / "f.pt", _model_cfg(), other)
    assert again["step"] == again["total_steps"] == fresh["step"] == 3
    lines = [json.loads(x) for x in (tmp_path / "w" / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == [1, 2, 3]
    _assert_same_weights(tmp_path / "m.pt", tmp_path / "f.pt")


def test_settings_that_decide_resuming(tiny_synthetic, tmp_path):
    _, _, index = tiny_synthetic

    def digest(model=None, **train):
        return settings_hash(classifier_settings(index.root, index, model or _model_cfg(), _cfg(**train)))

    base = digest()
    assert digest(num_workers=3, log_interval=7, checkpoint_interval=5, max_steps=2, device="cpu") == base
    assert digest(lr=0.02) != base and digest(epochs=2) != base and digest(split="val") != base
    assert digest(make_config("rpc", depth=34, weights="none")) != base  # another depth: afresh, not a crash
    weights = tmp_path / "w.pth"
    weights.write_bytes(b"1")
    with_file = digest(make_config("rpc", depth=18, weights=str(weights)))
    assert with_file != base
    weights.write_bytes(b"22")  # the same path, another file (e.g. a retrained backbone)
    assert digest(make_config("rpc", depth=18, weights=str(weights))) != with_file


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


@pytest.mark.slow  # compiling the model takes one to two minutes on two cores
@pytest.mark.skipif(not (shutil.which("c++") or shutil.which("g++")), reason="torch.compile needs a C++ compiler")
def test_compiled_training_stays_close_to_eager(tiny_synthetic, tmp_path):
    """train.compile (torch.compile, inductor) changes the speed, not the result: 3 steps from the same start give
    the same losses and weights within float tolerance; and it does not change the resume settings."""
    _, _, index = tiny_synthetic
    eager = train_classifier(index.root, tmp_path / "e", tmp_path / "e.pt", _model_cfg(), _cfg(max_steps=3))
    compiled = train_classifier(index.root, tmp_path / "c", tmp_path / "c.pt", _model_cfg(),
                                _cfg(max_steps=3, compile=True))  # fmt: skip
    assert eager["step"] == compiled["step"] == 3
    a = torch.load(tmp_path / "e" / "last.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "c" / "last.pt", weights_only=True)["model"]
    worst = max((a[k].float() - b[k].float()).abs().max().item() for k in a if a[k].is_floating_point())
    assert worst < 1e-3, worst
    la = [json.loads(x)["total"] for x in (tmp_path / "e" / "metrics.jsonl").read_text().splitlines()]
    lb = [json.loads(x)["total"] for x in (tmp_path / "c" / "metrics.jsonl").read_text().splitlines()]
    assert la == pytest.approx(lb, abs=1e-3)
    base = classifier_settings(index.root, index, _model_cfg(), _cfg())
    assert settings_hash(base) == settings_hash(
        classifier_settings(index.root, index, _model_cfg(), _cfg(compile=True))
    )


@pytest.mark.parametrize("name, momentum", [("paper", 0.9), ("sipe_code", 1e-4)])
def test_optimizer_switch_builds_the_intended_sgd(name, momentum):
    """`sipe_code` is SGD as SIPE's PolyOptimizerSGD ends up: SGD.__init__(params, lr, weight_decay) puts the weight
    decay (1e-4) into the momentum slot, and its parameter groups carry weight_decay 1e-4; `paper` keeps 0.9."""
    from rpc.engine.train import build_optimizer

    model = RPCModel(make_config("sipe", depth=18, weights="none", num_classes=3))
    opt = build_optimizer(model, _cfg(optimizer=name, lr=0.1, weight_decay=1e-4))
    assert len(opt.param_groups) == 2
    for group, lr in zip(opt.param_groups, (0.1, 1.0), strict=True):
        assert group["momentum"] == pytest.approx(momentum, rel=0, abs=1e-12)
        assert group["weight_decay"] == pytest.approx(1e-4, rel=0, abs=1e-12)
        assert group["lr"] == pytest.approx(lr)
    # the momentum buffer follows: after two steps with the same gradient, the second update is g * (1 + momentum)
    p = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))
    sgd = torch.optim.SGD([p], lr=1.0, momentum=opt.param_groups[0]["momentum"])
    for _ in range(2):
        p.grad = torch.ones(1, dtype=torch.float64)
        sgd.step()
    assert p.item() == pytest.approx(-(1 + (1 + momentum)), abs=1e-9)


def test_optimizer_switch_rejects_unknown_names():
    with pytest.raises(ValueError, match="train.optimizer"):
        _cfg(optimizer="adam")


def test_deterministic_switch_turns_on_deterministic_algorithms(monkeypatch):
    from rpc.engine import train

    calls = []
    monkeypatch.setattr(train, "make_deterministic", lambda: calls.append(1))
    train._setup(_cfg(deterministic=True))
    train._setup(_cfg())
    assert calls == [1]


@pytest.mark.parametrize("setting, timed, expected", [("on", None, True), ("off", None, False),
                                                     ("auto", (0.2, 0.1), True), ("auto", (0.1, 0.2), False)])
def test_channels_last_setting_in_fp32_on_cpu(setting, timed, expected, tmp_path, monkeypatch):
    """``train.channels_last``: on / off as said; auto in fp32 on a CPU: the layout the timed step shows faster
    (``measure`` returns seconds in the default layout, then in channels-last)."""
    from rpc.engine.train import build_model
    from rpc.utils import precision

    monkeypatch.setenv("RPC_CACHE_DIR", str(tmp_path))
    calls = []
    monkeypatch.setattr(precision, "measure", lambda step: calls.append(step) or timed)
    cfg = TrainConfig(amp="none", channels_last=setting, batch_size=2, crop=32)
    model, amp, channels_last = build_model(make_config("sipe", depth=18, weights="none", num_classes=3), cfg,
                                            torch.device("cpu"), world=1)  # fmt: skip
    assert amp is False and channels_last is expected and len(calls) == (setting == "auto")
    weight = model.stages[0].backbone.layer3[0].conv1.weight
    assert weight.is_contiguous(memory_format=torch.channels_last) is expected


def test_channels_last_setting_rejects_unknown_values():
    from rpc.engine.train import build_model

    with pytest.raises(ValueError, match="channels_last must be auto, on or off"):
        build_model(make_config("sipe", depth=18, weights="none", num_classes=3),
                    TrainConfig(amp="none", channels_last="yes"), torch.device("cpu"), world=1)  # fmt: skip


@pytest.mark.parametrize("stage", [0, 1])
def test_per_stage_clipping_gives_each_stage_its_update_alone(stage):
    """``clip_grad_scope: stage``: each stage network's step equals the step it takes when it is the only network
    trained on the same loss terms (the other's parameters frozen); one norm over both (``model``) shrinks it more."""
    import copy
    from types import SimpleNamespace

    from rpc.engine.train import build_optimizer, train_step

    torch.manual_seed(0)
    model = RPCModel(make_config("rpc", depth=18, weights="none", num_classes=3)).train()
    g = torch.Generator().manual_seed(1)
    batch = {"image": torch.randn(2, 3, 64, 64, generator=g), "label": torch.tensor([[1.0, 0, 0], [0, 1, 1]]),
             "valid": torch.ones(2, 64, 64)}  # fmt: skip
    run = SimpleNamespace(device=torch.device("cpu"), world=1, rank=0, amp=False, channels_last=False, last=None)
    cfg = _cfg(lr=0.1, clip_grad=0.05)  # small enough that every norm is clipped

    def step(net, scope):
        train_step(net, net, build_optimizer(net, cfg), batch, 0, 10, _cfg(**{**vars(cfg), "clip_grad_scope": scope}),
                   run)  # fmt: skip
        return [p.detach().clone() for p in net.stages[stage].parameters()]

    before = [p.detach().clone() for p in model.stages[stage].parameters()]
    per_stage = step(copy.deepcopy(model), "stage")
    joint = step(copy.deepcopy(model), "model")
    alone_model = copy.deepcopy(model)
    for k, s in enumerate(alone_model.stages):
        if k != stage:
            s.requires_grad_(False)
    alone = step(alone_model, "model")  # the only parameters with a gradient: this stage's

    moved = sum((a - b).abs().sum() for a, b in zip(per_stage, before, strict=True))
    assert moved > 0
    for a, b in zip(per_stage, alone, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-7)
    # the joint norm is larger than either stage's, so the joint clip moves this stage less
    joint_moved = sum((a - b).abs().sum() for a, b in zip(joint, before, strict=True))
    assert joint_moved < 0.9 * moved


def test_clip_scope_rejects_unknown_names():
    with pytest.raises(ValueError, match="train.clip_grad_scope"):
        _cfg(clip_grad_scope="layer")
