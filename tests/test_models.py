import pytest
import torch
import torch.nn.functional as F

from rpc.models.attention import FeatureFusion
from rpc.models.backbone import FrozenBNResNet, layer_channels
from rpc.models.prototypes import correlation_seeds, label_mask, normalized_cam, prototypes, specific_map
from rpc.models.rpc import RPCModel, make_config

C = 4


def _model(preset="rpc", **kw):
    torch.manual_seed(0)
    return RPCModel(make_config(preset, num_classes=C, depth=18, weights="none", **kw))


def _batch(n=2, size=64):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n, 3, size, size, generator=g)
    y = torch.zeros(n, C)
    y[0, 1] = 1
    y[1, [0, 3]] = 1
    return x, y, torch.ones(n, size, size)


def test_sfa_parameter_count_resnet50_layers_2_to_4():
    fusion = FeatureFusion(layer_channels(50), 50, (2, 3, 4), "sfa")
    assert fusion.num_attention_weights() == 3584  # paper Table 5: 3.584K
    assert FeatureFusion(layer_channels(50), 50, (2, 3, 4), "spatial").num_attention_weights() == 3584
    assert FeatureFusion(layer_channels(50), 50, (2, 3, 4), "none").num_attention_weights() == 0


def test_backbone_output_stride_16_and_sipe_regime():
    net = FrozenBNResNet(18, "none")
    feats = net(torch.randn(1, 3, 64, 96))
    assert [tuple(f.shape[-2:]) for f in feats] == [(16, 24), (8, 12), (4, 6), (4, 6)]
    net.train()
    assert all(not m.training for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d))
    frozen = list(net.stem.parameters()) + list(net.layer1.parameters()) + list(net.layer2.parameters())
    assert not any(p.requires_grad for p in frozen)
    # SIPE's FixedBatchNorm: running statistics always, but the affine weight/bias of layers 3-4 train
    assert net.layer3[0].bn1.weight.requires_grad and net.layer4[1].bn2.bias.requires_grad
    assert not net.stem[1].weight.requires_grad


def test_gradient_reaches_layer3_bn_affine_and_never_layer2():
    model = _model("rpc").train()
    x, y, valid = _batch()
    model.losses(model(x, y, valid), y)["total"].backward()
    for stage in model.stages:
        bb = stage.backbone
        assert bb.layer3[0].bn1.weight.grad.abs().sum() > 0 and bb.layer3[0].bn1.bias.grad.abs().sum() > 0
        assert bb.layer4[0].bn2.weight.grad.abs().sum() > 0
        assert all(p.grad is None for p in bb.layer2.parameters())
        assert all(p.grad is None for p in bb.stem.parameters())
    # BN statistics are not updated by a training step (running statistics only)
    before = model.stages[0].backbone.layer3[0].bn1.running_mean.clone()
    model(x, y, valid)
    torch.testing.assert_close(model.stages[0].backbone.layer3[0].bn1.running_mean, before)
    backbone_params, _ = model.param_groups()
    ids = {id(p) for p in backbone_params}
    assert id(model.stages[0].backbone.layer3[0].bn1.weight) in ids
    assert id(model.stages[0].backbone.layer2[0].conv1.weight) not in ids


def test_background_rule_all_classes_before_label_mask():
    # 1 image, 2 classes, 3 pixels; class 1 present, class 2 absent but strong on pixel 2
    logits = torch.tensor([[[[4.0, 2.0, 0.0]], [[0.0, 1.0, 8.0]]]])
    labels = torch.tensor([[1.0, 0.0]])
    sipe = normalized_cam(logits, labels, "all")
    present = normalized_cam(logits, labels, "present")
    m1 = torch.tensor([1.0, 0.5, 0.0]) * (4 / (4 + 1e-5))
    m2 = torch.tensor([0.0, 1 / 8, 1.0]) * (8 / (8 + 1e-5))
    torch.testing.assert_close(sipe[0, 0, 0], 1 - torch.maximum(m1, m2))  # [~0, 0.5, ~0]
    torch.testing.assert_close(present[0, 0, 0], 1 - m1)  # [~0, 0.5, ~1]
    for cam in (sipe, present):  # the absent class is zeroed either way
        torch.testing.assert_close(cam[0, 1, 0], m1)
        assert cam[0, 2].abs().sum() == 0
    with pytest.raises(ValueError, match="background"):
        normalized_cam(logits, labels, "mean")


def test_model_background_switch_reaches_the_stage_cam():
    x, y, valid = _batch()
    outs = {}
    for rule in ("all", "present"):
        torch.manual_seed(0)
        outs[rule] = _model("cam", background=rule).train()(x, y, valid)["stages"][0]["cam"]
    torch.testing.assert_close(outs["all"][:, 1:], outs["present"][:, 1:])
    assert (outs["all"][:, 0] <= outs["present"][:, 0] + 1e-6).all()
    assert (outs["all"][:, 0] < outs["present"][:, 0] - 1e-3).any()


def test_rs_background_from_stage1_only():
    x, y, _ = _batch()
    pairs = torch.stack([x, x.flip(-1)], 1).flatten(0, 1)
    res = {}
    for rule in ("max", "stage1"):
        model = _model("rpc", rs_background=rule).eval()
        res[rule] = model.maps(pairs, y)
    (final_max, stages), (final_s1, stages_s1) = res["max"], res["stage1"]
    torch.testing.assert_close(final_max[:, 0], torch.maximum(stages[0][:, 0], stages[1][:, 0]))
    torch.testing.assert_close(final_s1[:, 0], stages_s1[0][:, 0])
    torch.testing.assert_close(final_s1[:, 1:], final_max[:, 1:])


@pytest.mark.parametrize("attention_grad", [False, True])
def test_attention_gradient_switch(attention_grad):
    torch.manual_seed(0)
    net = FrozenBNResNet(18, "none").train()
    fusion = FeatureFusion(net.channels, 18, (2, 3, 4), "sfa", attention_grad)
    fs, s_map = fusion(net(torch.randn(2, 3, 64, 64)))
    (fs.sum() + s_map.sum()).backward()
    grad = net.layer4[1].conv2.weight.grad
    if attention_grad:
        assert grad is not None and grad.abs().sum() > 0
    else:
        assert grad is None  # side projections and attention both see detached features (SIPE)
    assert fusion.att_conv["3"].weight.grad.abs().sum() > 0


def test_hand_computed_sipe_example():
    # three pixels in a row: two share a feature, the third is orthogonal
    feats = torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]]).view(1, 2, 1, 3)
    cam = torch.tensor([[0.0, 0.5, 1.0], [1.0, 0.5, 0.0]]).view(1, 2, 1, 3)  # (bg, class 1)
    seeds = correlation_seeds(cam, feats, torch.ones(1, 2, 1, 3))
    # class-1 IoU: pixels 0,1 -> 1.5/2 = 0.75, pixel 2 -> 0; background x0.5: 0.083, 0.083, 0.333
    assert seeds.view(2, 3).tolist() == [[0, 0, 1], [1, 1, 0]]
    protos = prototypes(seeds, feats)
    torch.testing.assert_close(protos, torch.tensor([[[0.0, 1 / 3], [2 / 3, 0.0]]]))
    is_cam = specific_map(protos, feats)
    torch.testing.assert_close(is_cam.view(2, 3), torch.tensor([[0.0, 0.0, 1.0], [1.0, 1.0, 0.0]]))
    # label mask: an absent class gets no seed, hence a zero prototype and a zero map
    masked = correlation_seeds(cam, feats, torch.tensor([1.0, 0.0]).view(1, 2, 1, 1).expand(1, 2, 1, 3))
    assert masked[0, 1].sum() == 0 and specific_map(prototypes(masked, feats), feats)[0, 1].abs().sum() == 0


def test_normalized_cam_values():
    logits = torch.tensor([[[[2.0, -1.0]], [[1.0, 4.0]]]])  # (1, 2 classes, 1, 2)
    cam = normalized_cam(logits, torch.tensor([[1.0, 0.0]]), background="present")
    torch.testing.assert_close(cam[0, 1, 0], torch.tensor([2 / (2 + 1e-5), 0.0]))
    assert cam[0, 2].abs().sum() == 0  # absent class masked
    torch.testing.assert_close(cam[0, 0], 1 - cam[0, 1:].amax(0))


def test_correlation_matches_broadcast_reference():
    g = torch.Generator().manual_seed(3)
    cam = torch.rand(2, 3, 4, 5, generator=g)
    feats = torch.randn(2, 6, 4, 5, generator=g)
    f = F.normalize(feats.flatten(2), dim=1, eps=1e-5)
    corr = F.relu(f.transpose(1, 2) @ f).unsqueeze(1)  # (N, 1, HW, HW)
    m = cam.flatten(2).unsqueeze(2)  # (N, K, 1, HW)
    inter = (corr * m).sum(-1)
    iou = inter / (corr.sum(-1) + m.sum(-1) - inter)
    iou[:, 0] *= 0.5
    expected = F.one_hot(iou.argmax(1), 3).transpose(1, 2).reshape(2, 3, 4, 5).float()
    torch.testing.assert_close(correlation_seeds(cam, feats, torch.ones(2, 3, 4, 5)), expected)


def test_erasing_removes_exactly_pixels_above_alpha():
    model = _model(alpha=0.5).train()
    x, y, valid = _batch()
    seen = {}
    model.stages[1].backbone.register_forward_pre_hook(lambda m, args: seen.update(x=args[0]))
    out = model(x, y, valid)
    fg = out["stages"][0]["cam"][:, 1:].amax(1, keepdim=True)
    up = F.interpolate(fg, x.shape[-2:], mode="bilinear", align_corners=False)
    erased = up >= 0.5
    assert erased.any() and (~erased).any()
    torch.testing.assert_close(seen["x"], x * (~erased))
    assert torch.equal(out["erase_masks"][0].bool(), ~erased)


@pytest.mark.parametrize("placement", ["weight", "gate"])
def test_stages_share_no_parameters_and_both_get_gradients(placement):
    """Every new layer of both stages learns, except SFA's attention branch when S is only a 0/1 gate (the
    default reading): then no gradient passes S at all."""
    model = _model(sfa_placement=placement).train()
    ptrs = [{p.data_ptr() for p in s.parameters()} for s in model.stages]
    assert not ptrs[0] & ptrs[1]
    x, y, valid = _batch()
    model.losses(model(x, y, valid), y)["total"].backward()
    for stage in model.stages:
        for module in stage.new_modules():
            for name, p in module.named_parameters():
                if placement == "gate" and name.startswith(("att_conv", "att_bn")):
                    assert p.grad is None and not p.requires_grad, name  # frozen: nothing could train it
                    continue
                assert p.grad is not None and p.grad.abs().sum() > 0, name
        assert stage.backbone.layer4[0].conv1.weight.grad.abs().sum() > 0
        assert stage.backbone.layer1[0].conv1.weight.grad is None
        assert stage.backbone.layer2[0].conv1.weight.grad is None


def test_rs_cam_is_max_of_stage_maps_and_three_stages():
    model = _model(num_stages=3).eval()
    x, y, _ = _batch()
    pairs = torch.stack([x, x.flip(-1)], 1).flatten(0, 1)
    final, per_stage = model.maps(pairs, y)
    assert len(per_stage) == 3
    torch.testing.assert_close(final, torch.stack(per_stage).amax(0))


def test_one_stage_no_sfa_is_sipe():
    model = _model("sipe").train()
    x, y, valid = _batch()
    out = model(x, y, valid)
    st = out["stages"][0]
    # SIPE: seeds from layer-4 correlations in training, prototypes over the hierarchical features
    feats = model.stages[0].backbone(x)
    hie, _ = model.stages[0].fusion(feats)
    seeds = correlation_seeds(st["cam"], feats[3], st["label_mask"])
    torch.testing.assert_close(st["seeds"], seeds)
    torch.testing.assert_close(out["rs_cam"], specific_map(prototypes(seeds, hie), hie))
    losses = model.losses(out, y)
    q = out["rs_cam"] / (out["rs_cam"].amax((2, 3), keepdim=True) + 1e-5)
    torch.testing.assert_close(losses["gsc"], (q - st["cam"]).abs().mean())
    assert losses["aug"] == 0 and hie.shape[1] == 32 + 32 + 64 + 64  # SIPE layers 1-4, R18 widths


def test_cam_preset_has_no_prototypes():
    model = _model("cam").eval()
    x, y, _ = _batch()
    final, per_stage = model.maps(torch.stack([x, x.flip(-1)], 1).flatten(0, 1), y)
    assert final.shape[1] == C + 1 and model.stages[0].fusion is None
    torch.testing.assert_close(final[:, 0], 1 - final[:, 1:].amax(1))


@pytest.mark.parametrize("attention", ["none", "spatial", "self_attention", "sfa"])
def test_attention_variants_run(attention):
    model = _model(attention=attention, num_stages=1).train()
    x, y, valid = _batch()
    loss = model.losses(model(x, y, valid), y)["total"]
    assert torch.isfinite(loss)


def test_bad_config_values_are_named():
    with pytest.raises(ValueError, match="model: attention: .cbam. is not one of"):
        make_config("rpc", attention="cbam")
    with pytest.raises(ValueError, match="unknown preset"):
        make_config("irn")


def test_bf16_autocast_maps_stay_close_to_fp32():
    model = _model("rpc").eval()
    x, y, _ = _batch(size=96)
    pairs = torch.stack([x, x.flip(-1)], 1).flatten(0, 1)
    ref, _ = model.maps(pairs, y)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low, _ = model.maps(pairs.contiguous(memory_format=torch.channels_last), y)
    assert low.dtype == torch.float32  # the prototype math runs in float32
    assert (low - ref).abs().max() < 0.1 and (low - ref).abs().mean() < 0.02


def test_channels_last_fp32_maps_equal_the_default_layout():
    """The maps run in channels-last in fp32 too (rpc.cams.generate): the layout changes the summation order of
    the convolutions, not the maps (maps in [0, 1]; 1e-5)."""
    model = _model("rpc").eval()
    x, y, _ = _batch(size=96)
    pairs = torch.stack([x, x.flip(-1)], 1).flatten(0, 1)
    ref, ref_stages = model.maps(pairs, y)
    model = model.to(memory_format=torch.channels_last)
    assert model.stages[1].backbone.layer3[0].conv1.weight.is_contiguous(memory_format=torch.channels_last)
    out, stages = model.maps(pairs.contiguous(memory_format=torch.channels_last), y)
    assert ref.abs().max() > 0.5  # maps with content, not zeros
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=0)
    for a, b in zip(stages, ref_stages, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


def test_exported_backbone_initialises_another_model(tmp_path):
    from rpc.models.backbone import FrozenBNResNet, torchvision_state_dict

    torch.manual_seed(0)
    trained = FrozenBNResNet(18, "none")
    torch.save(torchvision_state_dict(trained), tmp_path / "b.pth")
    again = FrozenBNResNet(18, tmp_path / "b.pth")
    for (k, a), b in zip(trained.state_dict().items(), again.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, msg=k)
    x = torch.randn(1, 3, 64, 64)
    torch.testing.assert_close(trained.eval()(x)[3], again.eval()(x)[3])


def test_inference_seeds_from_all_classes_as_sipe_make_cam():
    x, y, _ = _batch()
    pairs = torch.stack([x, x.flip(-1)], 1).flatten(0, 1)
    seen = {}
    for rule in ("masked", "all_classes"):
        model = _model("sipe", inference_seed_cam=rule).eval()
        model.stages[0].register_forward_hook(lambda m, a, out, rule=rule: seen.update({rule: out["seeds"]}))
        model.maps(pairs, y)
    masked, sipe = seen["masked"], seen["all_classes"]
    # both are label-masked one-hot seeds; SIPE's leaves a pixel won by an absent class without any seed
    assert (masked[:, 1:] * (1 - y)[:, :, None, None]).sum() == 0
    assert (sipe.sum(1) <= 1).all() and (masked.sum(1) == 1).all()
    assert (sipe.sum(1) == 0).any()  # random weights: some pixel is won by an absent class
    # training is unaffected by the switch (SIPE's training masks the CAM before the seeds too)
    x_, y_, valid = _batch()
    a = _model("sipe", inference_seed_cam="masked").train()(x_, y_, valid)["stages"][0]["seeds"]
    b = _model("sipe", inference_seed_cam="all_classes").train()(x_, y_, valid)["stages"][0]["seeds"]
    torch.testing.assert_close(a, b)


def _random_bn_statistics(model, seed=0):
    """The backbones' BN statistics and affine parameters away from their defaults, so that folding has something
    to fold (the SFA attention's BN, which folding keeps, stays as initialised: random statistics there can switch
    S off everywhere)."""
    gen = torch.Generator().manual_seed(seed)
    for m in (m for stage in model.stages for m in stage.backbone.modules()):
        if isinstance(m, torch.nn.BatchNorm2d):
            for t, (lo, hi) in ((m.running_mean, (-0.5, 0.5)), (m.running_var, (0.5, 2.0)),
                                (m.weight.data, (0.5, 1.5)), (m.bias.data, (-0.2, 0.2))):  # fmt: skip
                t.copy_(torch.rand(t.shape, generator=gen) * (hi - lo) + lo)


def test_folded_batchnorm_gives_the_same_maps_and_features():
    """fp32: the folded model's maps equal the unfolded model's within 1e-5 (max abs; the maps are in [0, 1]),
    and the backbone features within 1e-4 relative; every BN that follows a convolution is gone."""
    import copy

    from rpc.models.fold import fold_batchnorm

    torch.manual_seed(0)
    # seeds from the label-masked CAM: with random weights, SIPE's inference seeds go mostly to absent classes
    cfg = make_config("rpc", depth=18, weights="none", num_classes=6, inference_seed_cam="masked")
    model = RPCModel(cfg).eval()
    _random_bn_statistics(model)
    folded = copy.deepcopy(model)
    n = fold_batchnorm(folded)
    assert n == 2 * 20  # per stage: stem 1 + 8 blocks x 2 + 3 shortcut projections
    left = [m for m in folded.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(left) == 2 * 3  # the SFA attention's BN follows no convolution: kept
    x = torch.randn(4, 3, 96, 128)
    labels = torch.zeros(2, 6)
    labels[:, 2] = labels[0, 4] = 1
    with torch.inference_mode():
        (a, stages_a), (b, stages_b) = model.maps(x, labels), folded.maps(x, labels)
        fa, fb = model.stages[0].backbone(x), folded.stages[0].backbone(x)
    assert a.abs().max() > 0.5  # maps with content
    torch.testing.assert_close(b, a, atol=1e-5, rtol=0)
    for sa, sb in zip(stages_a, stages_b, strict=True):
        torch.testing.assert_close(sb, sa, atol=1e-5, rtol=0)
    for ta, tb in zip(fa, fb, strict=True):
        assert (ta - tb).abs().max() <= 1e-4 * ta.abs().max()
    with pytest.raises(ValueError, match="eval mode"):
        fold_batchnorm(RPCModel(cfg).train())


def test_model_files_load_without_a_random_initialisation(tmp_path):
    """load_model builds the model on the meta device and takes every tensor from the file: no random numbers are
    drawn (the global generator is untouched), and the loaded weights equal the saved ones."""
    from rpc.models.checkpoint import load_model, save_model
    from rpc.models.rpc import config_to_dict

    torch.manual_seed(3)
    cfg = make_config("rpc", depth=18, weights="none", num_classes=6)
    model = RPCModel(cfg).eval()
    save_model(tmp_path / "m.pt", model, config_to_dict(cfg), [f"c{i}" for i in range(7)], {})
    state = torch.get_rng_state()
    loaded, _, _ = load_model(tmp_path / "m.pt")
    assert torch.equal(state, torch.get_rng_state())  # a random init would have drawn from it
    RPCModel(cfg)
    assert not torch.equal(state, torch.get_rng_state())  # (as building the model does)
    for (name, a), b in zip(model.state_dict().items(), loaded.state_dict().values(), strict=True):
        assert torch.equal(a, b) and not b.is_meta, name
    assert [p.requires_grad for p in loaded.parameters()] == [p.requires_grad for p in model.parameters()]


def test_sipe_inference_seeds_hand_computed_absent_class_wins():
    """Three pixels with orthogonal features (correlation = identity), class 1 present, class 2 absent but
    strongest on pixel 2. IoU of class c at pixel i = m_c[i] / (1 + sum m_c - m_c[i]):
    class 1 (map 1, .6, 0): .625, .3, 0; class 2 (map 0, 0, 1): 0, 0, 1; background (1 - max over all = 0, .4, 0),
    halved: 0, .2, 0. SIPE (all_classes): pixel 2 goes to the absent class 2, so no seed after the label mask;
    masked: class 2's map is zeroed first and pixel 2 falls to the background (a tie at 0, first index)."""
    from rpc.models.prototypes import seed_cam

    logits = torch.tensor([[2.0, 1.2, 0.0], [0.0, 0.0, 4.0]]).view(1, 2, 1, 3)
    labels = torch.tensor([[1.0, 0.0]])
    feats = torch.eye(3).view(1, 3, 1, 3)
    lm = label_mask(labels, None, (1, 3))
    sipe = correlation_seeds(seed_cam(logits, labels, lm, "all_classes"), feats, lm)
    masked = correlation_seeds(seed_cam(logits, labels, lm, "masked"), feats, lm)
    assert sipe.view(3, 3).tolist() == [[0, 0, 0], [1, 1, 0], [0, 0, 0]]
    assert masked.view(3, 3).tolist() == [[0, 0, 1], [1, 1, 0], [0, 0, 0]]


def _fusion_parts(fusion, feats):
    """The side features ``n_k`` and attention maps ``a_k`` computed by hand from the module's weights."""
    size = feats[3].shape[-2:]
    n = {}
    for k in fusion.feature_layers:
        s = fusion.side[str(k)](feats[k - 1])
        n[k] = F.interpolate(s / (s.norm(dim=1, keepdim=True) + 1e-5), size, mode="bilinear", align_corners=False)
    a = {k: F.interpolate(F.relu(fusion.att_bn[str(k)](fusion.att_conv[str(k)](feats[k - 1]))), size,
                          mode="bilinear", align_corners=False) for k in fusion.layers}  # fmt: skip
    return n, a


@pytest.mark.parametrize("layers, feature_layers", [((2, 3, 4), (1, 2, 3, 4)), ((3, 4), (2, 3, 4)), ((4,), (4,))])
def test_sfa_layers_for_s_and_for_fs_are_separate(layers, feature_layers):
    """``layers`` makes S (product of their a_k), ``feature_layers`` the side features F_s concatenates."""
    torch.manual_seed(0)
    net = FrozenBNResNet(18, "none").eval()
    fusion = FeatureFusion(net.channels, 18, layers, "sfa", feature_layers=feature_layers).eval()
    feats = net(torch.randn(2, 3, 64, 64))
    fs, s_map = fusion(feats)
    n, a = _fusion_parts(fusion, feats)
    s = torch.stack(list(a.values())).prod(0)
    torch.testing.assert_close(s_map, s)
    torch.testing.assert_close(fs, torch.cat([s * n[k] for k in sorted(feature_layers)], 1))
    assert set(fusion.att_conv) == {str(k) for k in layers} and set(fusion.side) == {str(k) for k in feature_layers}


def test_sfa_placement_gate_keeps_only_where_s_is_zero():
    """``gate``: S multiplies before the normalisation, which cancels it but where it is 0: F_s = 1(S > 0) n_k, and
    S gets no gradient through F_s; ``weight`` (S after the normalisation) gives it one."""
    torch.manual_seed(0)
    net = FrozenBNResNet(18, "none").eval()
    feats = net(torch.randn(2, 3, 64, 64))
    grads = {}
    for placement in ("weight", "gate"):
        torch.manual_seed(1)
        fusion = FeatureFusion(net.channels, 18, (2, 3, 4), "sfa", feature_layers=(1, 2, 3, 4), placement=placement)
        for bn in fusion.att_bn.values():  # switch some pixels off, so that the gate has something to do
            torch.nn.init.constant_(bn.bias, 0.0)
        fusion.eval()
        fs, s_map = fusion(feats)
        n, _ = _fusion_parts(fusion, feats)
        zero = s_map == 0
        assert 0 < zero.float().mean() < 1
        factor = s_map if placement == "weight" else (~zero).float()
        torch.testing.assert_close(fs, torch.cat([factor * n[k] for k in (1, 2, 3, 4)], 1))
        fs.square().sum().backward()
        grads[placement] = fusion.att_conv["3"].weight.grad
    assert grads["weight"].abs().sum() > 0 and grads["gate"] is None


def test_model_files_before_feature_layers_keep_their_features(tmp_path):
    """A model file written before ``feature_layers`` existed built F_s from ``layers``: loaded, it still does."""
    import json

    from rpc.models.checkpoint import load_model, save_model
    from rpc.models.rpc import config_to_dict

    old = _model("rpc", feature_layers=(2, 3, 4))
    stored = config_to_dict(old.cfg)
    del stored["feature_layers"], stored["sfa_placement"]
    save_model(tmp_path / "m.pt", old, stored, ["bg"] + [f"c{i}" for i in range(C)], {})
    model, cfg, _ = load_model(tmp_path / "m.pt")
    assert cfg.feature_layers == (2, 3, 4) and cfg.sfa_placement == "weight"
    assert json.loads(json.dumps(config_to_dict(cfg)))["feature_layers"] == [2, 3, 4]


# --- RPC as the paper writes it (docs/method.md section 0, clause a) ---


def test_rpc_preset_uses_the_sfa_layers_for_s_and_for_fs():
    """Eq. 10 multiplies S onto the layers of Eq. 9, whose products F_s concatenates: both are 2-4 (Table 8);
    without SFA the features stay SIPE's layers 1-4."""
    rpc = make_config("rpc")
    assert rpc.layers == rpc.feature_layers == (2, 3, 4)
    assert (rpc.sfa_placement, rpc.attention_grad, rpc.rs_background) == ("weight", True, "max")
    fusion = _model("rpc").stages[0].fusion
    assert set(fusion.att_conv) == set(fusion.side) == {"2", "3", "4"}
    assert set(_model("sipe").stages[0].fusion.side) == {"1", "2", "3", "4"}


def test_one_optimiser_step_changes_the_sfa_parameters():
    """In the default RPC the attention convolutions theta_k and their BN affine receive gradient from the
    method's loss, and one SGD step moves them."""
    model = _model("rpc").train()
    x, y, valid = _batch()
    backbone, new = model.param_groups()
    att = {name: p for name, p in model.named_parameters() if ".att_" in name}
    assert len(att) == 2 * 3 * 3  # 2 stages x layers 2-4 x (conv weight, BN weight, BN bias)
    assert all(p.requires_grad for p in att.values()) and {id(p) for p in att.values()} <= {id(p) for p in new}
    before = {name: p.detach().clone() for name, p in att.items()}
    opt = torch.optim.SGD([{"params": backbone}, {"params": new}], lr=0.1)
    model.losses(model(x, y, valid), y)["total"].backward()
    opt.step()
    for name, p in att.items():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
        assert not torch.equal(p.detach(), before[name]), name


def test_s_weights_the_prototypes_of_a_hand_made_input():
    """F_s = S * n: S cancels in a cosine but weights each pixel in the prototype average. Three pixels, one
    class seeded on pixels 0 and 1 with directions e0 and e1, pixel 2 in between: S = (1, 1, 1) gives the
    prototype (1, 1)/2 and pixel 2 an even match; S = (3, 1, 1) pulls the prototype towards e0."""
    n = torch.tensor([[1.0, 0.0, 0.6], [0.0, 1.0, 0.8]]).view(1, 2, 1, 3)
    seeds = torch.tensor([[0.0, 0.0, 1.0], [1.0, 1.0, 0.0]]).view(1, 2, 1, 3)
    maps = {}
    for s in ((1.0, 1.0, 1.0), (3.0, 1.0, 1.0)):
        fs = torch.tensor(s).view(1, 1, 1, 3) * n
        protos = prototypes(seeds, fs)
        maps[s] = specific_map(protos, fs)
    torch.testing.assert_close(prototypes(seeds, n)[0, 1], torch.tensor([1 / 3, 1 / 3]))
    # class 1 at pixel 2: cos((1, 1), (0.6, 0.8)) vs cos((3, 1), (0.6, 0.8))
    torch.testing.assert_close(maps[(1.0, 1.0, 1.0)][0, 1, 0, 2], torch.tensor(1.4 / 2**0.5))
    torch.testing.assert_close(maps[(3.0, 1.0, 1.0)][0, 1, 0, 2], torch.tensor(2.6 / 10**0.5))


def test_sfa_changes_the_rs_cam_and_the_gate_does_not():
    """Moving the attention convolution of stage 1 (S stays > 0) changes the RS-CAM when S weights the features
    (the default); under the gate ablation it changes nothing: the reason the gate is excluded."""
    x, y, _ = _batch()
    pairs = torch.stack([x, x.flip(-1)], 1).flatten(0, 1)
    changed = {}
    for placement in ("weight", "gate"):
        model = _model("rpc", sfa_placement=placement).eval()
        before, _ = model.maps(pairs, y)
        stage = model.stages[0]
        assert (stage(pairs[:2], y[:1], None, True, "fused")["s_map"] > 0).all()  # no zero to gate
        with torch.no_grad():
            stage.fusion.att_conv["3"].weight.mul_(1.5)
        assert (stage(pairs[:2], y[:1], None, True, "fused")["s_map"] > 0).all()
        after, _ = model.maps(pairs, y)
        changed[placement] = (after - before).abs().max().item()
    assert changed["weight"] > 1e-3 and changed["gate"] < 1e-6


def test_fusing_stage_maps_with_a_featureless_pixel():
    """Stage 1 has no features at pixel 1 (its maps are 0 there): that pixel takes stage 2's values, background
    included, under both background rules; pixel 0 follows the rule."""
    from rpc.models.rpc import fuse_stage_maps

    s1 = torch.tensor([[0.9, 0.0], [0.2, 0.0]]).view(1, 2, 1, 2)  # (bg, class 1) x 2 pixels
    s2 = torch.tensor([[0.95, 0.3], [0.6, 0.7]]).view(1, 2, 1, 2)
    v1 = torch.tensor([True, False]).view(1, 1, 1, 2)
    v2 = torch.ones(1, 1, 1, 2, dtype=torch.bool)
    q_max = fuse_stage_maps([s1, s2], [v1, v2], "max")
    q_s1 = fuse_stage_maps([s1, s2], [v1, v2], "stage1")
    torch.testing.assert_close(q_max.view(2, 2), torch.tensor([[0.95, 0.3], [0.6, 0.7]]))
    torch.testing.assert_close(q_s1.view(2, 2), torch.tensor([[0.9, 0.3], [0.6, 0.7]]))
    none = fuse_stage_maps([s1, s2], [v1, ~v2], "stage1")
    torch.testing.assert_close(none[..., 1], torch.zeros(1, 2, 1))  # no stage has features: no evidence


@pytest.mark.parametrize("rs_background", ["max", "stage1"])
@pytest.mark.parametrize("training", [True, False])
def test_zero_features_in_stage1_force_nothing(rs_background, training):
    """Stage 1's F_s forced to 0 at one cell: that cell takes no stage-1 seed and the RS-CAM there is stage 2's
    map (the pixel is not made foreground by a zero background), in training and at inference."""
    model = _model("rpc", rs_background=rs_background).train(training)
    fusion = model.stages[0].fusion
    original = fusion.forward

    def zero_at_cell(feats):
        fs, s_map = original(feats)
        fs, s_map = fs.clone(), s_map.clone()
        for t in (fs, s_map):
            if training:
                t[..., 1, 2] = 0
            else:  # image/flip pairs: the same cell of the image is column w - 3 of its flip
                t[0::2, :, 1, 2] = 0
                t[1::2, :, 1, t.shape[-1] - 3] = 0
        return fs, s_map

    fusion.forward = zero_at_cell
    for bn in model.stages[1].fusion.att_bn.values():  # stage 2 has features everywhere
        torch.nn.init.constant_(bn.bias, 10.0)
    x, y, valid = _batch()
    if training:
        out = model(x, y, valid)
    else:
        out = model(torch.stack([x, x.flip(-1)], 1).flatten(0, 1), y, None, fuse_flip=True)
    s1, s2 = out["stages"]
    assert not s1["has_features"][:, 0, 1, 2].any() and s2["has_features"].all()
    assert s1["seeds"][..., 1, 2].abs().sum() == 0 and s1["is_cam"][..., 1, 2].abs().sum() == 0
    torch.testing.assert_close(out["rs_cam"][..., 1, 2], s2["is_cam"][..., 1, 2])
    assert (out["rs_cam"][:, 0, 1, 2] > 0).all()  # stage 2's background evidence survives


def test_initial_weights_are_keyed_by_seed_and_module():
    """Two configurations that differ in one module start every shared module from the same weights: stage 2 of
    RPC and of SIPE with two stages (no SFA), and the side projections of layers 2-4. Another seed differs; the
    global generator is left where it was."""
    torch.manual_seed(123)
    state = torch.get_rng_state()
    cfg = dict(num_classes=C, depth=18, weights="none")
    rpc = RPCModel(make_config("rpc", **cfg), seed=15)
    two = RPCModel(make_config("sipe", num_stages=2, **cfg), seed=15)
    other = RPCModel(make_config("rpc", **cfg), seed=16)
    assert torch.equal(torch.get_rng_state(), state)
    for k in (0, 1):
        torch.testing.assert_close(rpc.stages[k].classifier.weight, two.stages[k].classifier.weight, rtol=0, atol=0)
        for a, b in zip(rpc.stages[k].backbone.parameters(), two.stages[k].backbone.parameters(), strict=True):
            assert torch.equal(a, b)
        for layer in ("2", "3", "4"):
            assert torch.equal(rpc.stages[k].fusion.side[layer].weight, two.stages[k].fusion.side[layer].weight)
    assert not torch.equal(rpc.stages[1].classifier.weight, other.stages[1].classifier.weight)
    assert not torch.equal(rpc.stages[0].classifier.weight, rpc.stages[1].classifier.weight)
    # the one-stage SFA cell shares stage 1 with RPC
    one = RPCModel(make_config("rpc", num_stages=1, **cfg), seed=15)
    assert torch.equal(one.stages[0].fusion.att_conv["3"].weight, rpc.stages[0].fusion.att_conv["3"].weight)
