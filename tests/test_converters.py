"""Converter kinds (issue 21): one class per kind, registered by name; every kind runs every state of every
family it fits, starts from the linear map, is counted byte for byte by the pack and pwl.budget, is rebuilt by
the runtime from the pack header, and resumes exactly; the default (linear) trains the same weights as before."""
import hashlib
import random

import pytest
import torch
from pydantic import ValidationError
from safetensors.torch import load_file
from torch import nn

from conftest import PAIRS, arch_config, batch, make_mixed
from pwl.budget import part_bytes, state_bytes
from pwl.build import freeze
from pwl.config import LossConfig, OptimConfig
from pwl.mixing import CONVERTERS, ChannelMap, Converters, converter, distilled_parts, logits_of_all_states
from pwl.runtime.export import export_pack, model_configs
from pwl.runtime.pack import pack_path
from pwl.runtime.skeletons import converter_config, fill, sub_state
from pwl.schema.converters import CONVERTER_KINDS, ConverterConfig
from pwl.states import all_states
from test_train import AUG, NORM3, Interrupt, same_state, tiny_split
from pwl.losses import pwl_loss
from pwl.train import Trainee, TrainingRun, fit

KINDS = tuple(CONVERTER_KINDS)


def fits(kind: str, family: str) -> bool:
    return CONVERTER_KINDS[kind][1] is None or family in CONVERTER_KINDS[kind][1]


def test_every_kind_is_one_registered_class():
    assert set(CONVERTERS) == set(CONVERTER_KINDS)
    for kind in KINDS:
        m = converter(4, 8, ConverterConfig(kind=kind))
        assert type(m) is CONVERTERS[kind] and m.kind == kind
    assert CONVERTERS["linear"] is ChannelMap and isinstance(converter(5, 5, ConverterConfig(kind="mlp")), nn.Identity)


def test_params_name_the_kind_and_refuse_what_does_not_fit():
    assert arch_config("vgg").distill.converter.kind == "linear"
    assert arch_config("vgg", {"kind": "conv3x3", "hidden_ratio": 0.5}).distill.converter.hidden_ratio == 0.5
    with pytest.raises(ValidationError, match="conv3x3 does not fit the vit family"):
        arch_config("vit", {"kind": "conv3x3"})
    with pytest.raises(ValidationError, match="mlp does not fit the resnet family"):
        arch_config("resnet", {"kind": "mlp"})
    with pytest.raises(ValidationError, match="linear"):
        arch_config("vgg", {"kind": "cubic"})
    with pytest.raises(ValidationError, match="rank"):
        arch_config("vgg", {"kind": "lowrank", "rank": 0})


@pytest.mark.parametrize("kind", KINDS)
def test_every_state_runs_with_every_kind(family, kind):
    if not fits(kind, family):
        pytest.skip(f"{kind} does not fit {family}")
    mixed = make_mixed(family, converter=ConverterConfig(kind=kind, rank=2)).eval()
    x, _ = batch(family)
    states = all_states(mixed.num_blocks)
    shared = logits_of_all_states(mixed, x, states)
    for s in states:
        out = mixed(x, s)
        assert out.shape == (len(x), 5) and torch.isfinite(out).all()
        torch.testing.assert_close(shared[s], out)
    # a richer kind starts as its linear map: training starts from the published converter
    if kind != "linear":
        with torch.no_grad():
            for conv in [*mixed.converters.enc, *mixed.converters.dec]:
                f = torch.randn(2, conv.linear.weight.shape[1], *((4, 4) if family != "vit" else (3,)))
                if family == "vit":
                    f = f.transpose(1, 2)
                torch.testing.assert_close(conv(f), conv.linear(f), rtol=0, atol=0)


def hand_bytes(kind: str, cin: int, cout: int, cfg: ConverterConfig) -> int:
    """Float32 bytes of one converter, counted by hand from the kind's definition."""
    params = cout * cin + cout  # the linear map
    h = max(1, round(cout * cfg.hidden_ratio))
    if kind == "conv3x3":
        params += cout * h * 9 + h + h * cout + cout
    elif kind == "mlp":
        params += 2 * cout + cout * h + h + h * cout + cout
    elif kind == "lowrank":
        r = min(cfg.rank, cin, cout)
        params += r * cin + cout * r
    return 4 * params


@pytest.mark.parametrize("kind", KINDS)
def test_pack_and_budget_count_converter_bytes_by_hand(tmp_path, family, kind):
    if not fits(kind, family):
        pytest.skip(f"{kind} does not fit {family}")
    cfg = ConverterConfig(kind=kind, rank=3, hidden_ratio=0.5)
    mixed = make_mixed(family, converter=cfg).eval()
    pair = PAIRS[family]
    tw, sw = mixed.teacher.block_widths, mixed.student.block_widths
    index = export_pack(mixed, tmp_path, model_configs(
        arch_config(family).teacher, arch_config(family).student, 3, 5, pair["img"]))
    parts = part_bytes(tmp_path)
    n = mixed.num_blocks
    assert parts["enc"] == [hand_bytes(kind, t, s, cfg) for t, s in zip(tw[:-1], sw[:-1])]
    assert parts["dec"] == [hand_bytes(kind, s, t, cfg) for t, s in zip(tw[:-1], sw[:-1])]
    assert sum(parts["enc"] + parts["dec"]) == 4 * sum(p.numel() for p in mixed.converters.parameters())
    # a state pays for the converters it runs, no more: S|T at boundary 0 (dec), T|S at boundary 1 (enc)
    state = "ST" + "S" * (n - 2)
    assert state_bytes(parts, state)["converter_bytes"] == hand_bytes(kind, sw[0], tw[0], cfg) + \
        hand_bytes(kind, tw[1], sw[1], cfg)
    # the header carries the kind; the runtime's skeleton of that kind takes the pack's tensors
    assert converter_config(index.meta) == cfg
    tensors = load_file(str(pack_path(tmp_path)))
    with torch.device("meta"):
        skel = Converters(tw, sw, converter_config(index.meta))
    x, _ = batch(family)
    for kind_, b in (("dec", 0), ("enc", 1)):
        built = fill(getattr(skel, kind_)[b], sub_state(tensors, f"converters.{kind_}.{b}."))
        getattr(skel, kind_)[b] = built
    state_logits = type(mixed)(mixed.teacher, mixed.student, skel)(x, state)
    torch.testing.assert_close(state_logits, mixed(x, state), rtol=0, atol=0)


def distill(mixed, data, ckpt, on_epoch=lambda rec: None, scores=None, cross_mode="lattice", rising=True):
    """A tiny PWL distillation (as tests/test_train.py's), all loss terms on; val scores rise each epoch (the last
    is best) or, `rising=False`, stay flat (the first is best)."""
    freeze(mixed.teacher)
    rng = random.Random(0)
    scores = scores if scores is not None else []
    cfg = LossConfig(cross_mode=cross_mode, aux_ramp=0.5)

    def score_fn():
        scores.append(len(scores) + 1)
        return {"score": float(scores[-1]) if rising else 1.0}

    groups = [{"params": list(mixed.student.parameters()), "lr": 0.02},
              {"params": list(mixed.converters.parameters()), "lr": 0.004}]
    return fit(Trainee(distilled_parts(mixed), groups, lambda x, y, p: pwl_loss(mixed, x, y, cfg, rng, p), score_fn,
                       py_rng=rng),
               TrainingRun(train=data, norm=NORM3, optim=OptimConfig(lr=0.02, epochs=2, batch_size=8), augment=AUG,
                           checkpoint=ckpt, fingerprint="d", seed=0, on_epoch=on_epoch))


@pytest.mark.parametrize("family,kind", [("vgg", "conv3x3"), ("vit", "mlp")])
def test_distillation_with_a_richer_converter_resumes_exactly(tmp_path, family, kind):
    data = tiny_split(n=16, chans=3, classes=5, seed=1)
    cfg = ConverterConfig(kind=kind)
    full = make_mixed(family, converter=cfg)
    distill(full, data, tmp_path / "full.pt")

    def stop(rec):
        if rec["epoch"] == 1:
            raise Interrupt

    scores = []
    with pytest.raises(Interrupt):
        distill(make_mixed(family, converter=cfg), data, tmp_path / "cut.pt", on_epoch=stop, scores=scores)
    resumed = make_mixed(family, converter=cfg)
    res = distill(resumed, data, tmp_path / "cut.pt", scores=scores)
    assert res.resumed_from == 1
    assert same_state(distilled_parts(resumed).state_dict(), distilled_parts(full).state_dict())
    branch = full.converters.dec[0].branch[-1].weight
    assert branch.abs().sum() > 0  # the residual branch trained away from its zero start


def digest(state: dict) -> str:
    h = hashlib.sha256()
    for k in sorted(state):
        h.update(k.encode())
        h.update(state[k].detach().contiguous().numpy().tobytes())
    return h.hexdigest()


# sha256 of the student + converters before and after the tiny distillation below, on main's code before converter
# kinds existed (b7bcc82): the default must not move a bit
BEFORE_KINDS = {
    "vgg": ("41e4d5ba3c50e27e3ac1a71be36eece28ec1b1ac8414ac2c36c5f41474fb94a3",
            "8f2bdef1cc5a0c2f48a0c762482dc6e19a8debe094b870ddcf9abd8b5eb48c3a"),
    "vit": ("d487e8742f3f07ba162f9f0dc9e209b7628168858f4563bbd7a1ab86c7e7644b",
            "cd6673bf98e520f1c6068a6858535f87e4eaccb37c352d4b6160e2657f73a147"),
}


@pytest.mark.parametrize("family", sorted(BEFORE_KINDS))
def test_linear_default_trains_the_same_weights_as_before(tmp_path, family):
    mixed = make_mixed(family, converter=arch_config(family).distill.converter)
    assert digest(distilled_parts(mixed).state_dict()) == BEFORE_KINDS[family][0]
    distill(mixed, tiny_split(n=16, chans=3, classes=5, seed=1), tmp_path / "c.pt", rising=False)
    assert digest(distilled_parts(mixed).state_dict()) == BEFORE_KINDS[family][1]


@pytest.mark.parametrize("family,kind", [("vgg", "conv3x3"), ("vit", "mlp"), ("resnet", "lowrank")])
def test_runtime_rebuilds_the_packs_kind_and_serves_every_state_exactly(tmp_path, family, kind):
    """The progressive runtime reads the kind from the header and serves each state of a non-prefix order with
    exactly the logits of the mixed model (branches randomised, so a linear rebuild could not match)."""
    from pwl.runtime import DeviceProfile, ProgressiveModel

    mixed = make_mixed(family, converter=ConverterConfig(kind=kind, rank=2))
    with torch.no_grad():
        for p in mixed.converters.parameters():
            p.normal_(0, 0.3)
    mixed.eval()
    cfg = arch_config(family)
    export_pack(mixed, tmp_path, model_configs(cfg.teacher, cfg.student, 3, 5, PAIRS[family]["img"]))
    x, _ = batch(family)
    order = ["SSS", "STS", "STT", "TTT"]
    with torch.no_grad():
        refs = {s: mixed(x, s) for s in order}
    seen = []

    def on_event(e):
        if e["event"] in ("student_ready", "block_swapped"):
            logits, state = model.predict(x)
            seen.append(state)
            assert torch.equal(logits, refs[state])

    model = ProgressiveModel(tmp_path, DeviceProfile(name="t", read_bandwidth=1e9, open_latency_s=0.0, threads=1),
                             order, on_event=on_event)
    model.start()
    assert model.wait(10) and model.error is None
    assert seen == order
