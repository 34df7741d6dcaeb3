"""Least-squares converter initialisation (pwl.stitching, SN-Net's): the regression is exact where the data is
linear, every converter of every family and kind starts at least as close to its target as the random init, only
the linear maps move, and params name it or are refused."""
import pytest
import torch
from pydantic import ValidationError

from conftest import FAMILIES, PAIRS, IN_CHANS, arch_config, make_mixed
from pwl.data import Normalizer, Split
from pwl.schema.converters import CONVERTER_KINDS, ConverterConfig
from pwl.stitching import NormalEquations, fit_converters, linear_part

NORM = Normalizer([0.5] * IN_CHANS, [0.25] * IN_CHANS)


def images(family: str, n: int = 48, seed: int = 0) -> Split:
    g = torch.Generator().manual_seed(seed)
    img = PAIRS[family]["img"]
    return Split(torch.randint(0, 256, (n, IN_CHANS, img, img), dtype=torch.uint8, generator=g),
                 torch.zeros(n, dtype=torch.int64))


def test_normal_equations_recover_an_exact_linear_map_from_batches():
    g = torch.Generator().manual_seed(0)
    w, b = torch.randn(3, 5, generator=g, dtype=torch.float64), torch.randn(3, generator=g, dtype=torch.float64)
    eq = NormalEquations()
    for _ in range(4):  # accumulated over batches, as fit_converters feeds it
        x = torch.randn(50, 5, generator=g, dtype=torch.float64)
        eq.add(x, x @ w.T + b)
    w_fit, b_fit, unexplained = eq.solve(ridge=0.0)
    assert torch.allclose(w_fit, w, atol=1e-8) and torch.allclose(b_fit, b, atol=1e-8)
    assert unexplained < 1e-10
    y = torch.randn(200, 3, generator=g, dtype=torch.float64)  # unrelated target: nearly nothing explained
    noise = NormalEquations()
    noise.add(torch.randn(200, 5, generator=g, dtype=torch.float64), y)
    assert 0.8 < noise.solve(ridge=1e-4)[2] <= 1.0


def target_error(mixed, split: Split) -> dict[str, float]:
    """Mean squared error of every converter against the feature it stands in for (both nets in eval mode)."""
    x = NORM(split.x)
    with torch.no_grad():
        ft, fs = mixed.teacher.eval().features(x), mixed.student.eval().features(x)
        out = {}
        for b in range(mixed.num_blocks - 1):
            out[f"enc.{b}"] = float(((mixed.converters.enc[b](ft[b]) - fs[b]) ** 2).mean())
            out[f"dec.{b}"] = float(((mixed.converters.dec[b](fs[b]) - ft[b]) ** 2).mean())
    return out


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("kind", tuple(CONVERTER_KINDS))
def test_fit_moves_only_the_linear_maps_and_never_starts_worse(family, kind):
    fits = CONVERTER_KINDS[kind][1]
    if fits is not None and family not in fits:
        pytest.skip(f"{kind} does not fit {family}")
    mixed = make_mixed(family, converter=ConverterConfig(kind=kind))
    mixed.student.train()
    split = images(family)
    before = {k: v.clone() for k, v in mixed.state_dict().items()}
    err_before = target_error(mixed, split)
    mixed.student.train()
    unexplained = fit_converters(mixed, split, NORM, images=40, batch_size=16)
    assert mixed.student.training and not mixed.teacher.training  # modes as they were
    assert set(unexplained) == set(err_before) and all(0 <= u <= 1 for u in unexplained.values()), unexplained
    linear_keys = {f"converters.{side}.{b}.{name}" for side in ("enc", "dec") for b in range(mixed.num_blocks - 1)
                   for name in (("weight", "bias") if kind == "linear" else ("linear.weight", "linear.bias"))}
    after = mixed.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == linear_keys, changed ^ linear_keys
    err_after = target_error(mixed, split)
    for name in err_before:  # the fit is the least-squares optimum on these images (40 of the 48 seen here)
        assert err_after[name] <= err_before[name] * 1.05, (name, err_before[name], err_after[name])


def test_identity_converters_are_left_alone():
    mixed = make_mixed("vgg", same_width=True)
    assert all(linear_part(c) is None for c in mixed.converters.enc)
    assert fit_converters(mixed, images("vgg"), NORM, images=16, batch_size=8) == {}


def test_params_name_the_init_or_are_refused():
    cfg = arch_config("vgg")
    assert cfg.distill.converter_init == "random" and cfg.distill.converter_fit_images == 4096
    raw = cfg.model_dump(mode="json")
    for bad, msg in (({"converter_init": "svd"}, "random"), ({"converter_fit_images": 0}, "greater than or equal"),
                     ({"converter_fit_images": True}, "yes/no")):
        with pytest.raises(ValidationError, match=msg):
            type(cfg).model_validate({**raw, "distill": {**raw["distill"], **bad}})
