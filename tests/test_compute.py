"""The compute layer on a CPU-only machine: device resolution, and the GPU code paths (autocast, gradient
scaling, channels_last) exercised on the CPU, where PyTorch supports them too."""
import random

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import arch_config, clone
from pwl import compute as compute_mod
from pwl.compute import CPU, Compute, make_compute, resolve_amp
from pwl.config import ComputeConfig, OptimConfig
from pwl.data import Normalizer, Split
from pwl.errors import PWLError
from pwl.evaluation import accuracy
from pwl.losses import pwl_loss
from pwl.train import Trainee, TrainingRun, fit

NORM = Normalizer([0.5] * 3, [0.25] * 3)


def split(n=48, seed=0) -> Split:
    g = torch.Generator().manual_seed(seed)
    return Split(torch.randint(0, 256, (n, 3, 8, 8), dtype=torch.uint8, generator=g),
                 torch.randint(0, 4, (n,), generator=g))


def cnn(seed=0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))


def train(model, compute: Compute, ckpt, epochs=2):
    def loss_fn(x, y, progress):
        logits = model(x)
        return F.cross_entropy(logits, y), {}, logits
    return fit(Trainee(model, [{"params": list(model.parameters())}], loss_fn,
                       lambda: {"score": accuracy(model, split(16, 1), NORM, 8, compute)}),
               TrainingRun(train=split(), norm=NORM, optim=OptimConfig(lr=0.05, epochs=epochs, batch_size=8),
                           augment=None, checkpoint=ckpt, fingerprint="c", seed=0, compute=compute))


def test_auto_resolves_to_cpu_without_a_gpu_and_cuda_is_a_clear_error():
    if torch.cuda.is_available():
        pytest.skip("a GPU is visible")
    c = make_compute(ComputeConfig(amp="off", channels_last="off"))
    assert c.device.type == "cpu" and c.amp_dtype is None and not c.channels_last and c.is_main
    assert c.precision == "fp32"
    with pytest.raises(PWLError, match="no CUDA device is visible"):
        make_compute(ComputeConfig(device="cuda"))


@pytest.mark.parametrize("native", [True, False])
def test_amp_resolution_on_a_cpu_with_and_without_native_bf16(monkeypatch, native):
    """auto = bf16 only where the CPU has it; bf16 where it is not native and fp16 on a CPU are errors that say
    what to set instead."""
    monkeypatch.setattr(compute_mod, "cpu_isa", lambda: "avx2 avx512f" + (" amx_bf16 amx_tile" if native else ""))
    bf16 = torch.bfloat16 if native else None
    assert resolve_amp("auto", use_cuda=False) is bf16
    assert resolve_amp("off", use_cuda=False) is None
    if native:
        assert resolve_amp("bf16", use_cuda=False) is torch.bfloat16
    else:
        with pytest.raises(PWLError, match="no native bfloat16") as e:
            resolve_amp("bf16", use_cuda=False)
        assert "compute.amp=auto" in e.value.fix
    with pytest.raises(PWLError, match="fp16 is for GPUs"):
        resolve_amp("fp16", use_cuda=False)
    c = make_compute(ComputeConfig(device="cpu"))
    assert c.amp_dtype is bf16 and c.channels_last
    assert c.record["precision"] == c.precision == ("bf16" if native else "fp32") + "+channels_last"
    assert c.record["cpu_bf16"] is native


def test_old_boolean_switches_keep_their_meaning():
    assert (ComputeConfig(amp=True).amp, ComputeConfig(amp=False).amp) == ("auto", "off")
    assert (ComputeConfig(channels_last=True).channels_last, ComputeConfig(channels_last=False).channels_last) \
        == ("on", "off")
    with pytest.raises(ValueError):
        ComputeConfig(amp="bfloat17")


def test_a_checkpoint_is_not_resumed_in_another_precision(tmp_path, capsys):
    fp32, bf16 = CPU, Compute(torch.device("cpu"), amp_dtype=torch.bfloat16, channels_last=True)
    train(cnn(), fp32, tmp_path / "c.pt", epochs=1)
    resumed = train(cnn(), bf16, tmp_path / "c.pt", epochs=2)  # same fingerprint, other precision
    assert resumed.resumed_from == 0 and "trained in fp32, this run trains in bf16+channels_last" in \
        capsys.readouterr().out
    assert train(cnn(), bf16, tmp_path / "c.pt", epochs=3).resumed_from == 2  # its own checkpoint: resumed


def test_launcher_must_be_python_or_torchrun():
    ComputeConfig(launcher="torchrun --standalone --nproc_per_node=2")
    with pytest.raises(ValueError, match="must start with python or torchrun"):
        ComputeConfig(launcher="rm -rf /")


def test_channels_last_trains_like_contiguous(tmp_path):
    a, b = cnn(), cnn()
    train(a, CPU, tmp_path / "a.pt")
    cl = Compute(torch.device("cpu"), channels_last=True)
    cl.module(b)
    assert b[0].weight.is_contiguous(memory_format=torch.channels_last)
    train(b, cl, tmp_path / "b.pt")
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.allclose(va, vb, atol=1e-4), k


def test_float16_autocast_with_grad_scaler_trains_and_resumes(tmp_path):
    """The float16 path of GPUs without bfloat16: autocast + GradScaler, whose state is checkpointed."""
    half = Compute(torch.device("cpu"), amp_dtype=torch.float16)
    assert half.needs_grad_scaler
    model = cnn()
    before = model[0].weight.clone()
    result = train(model, half, tmp_path / "h.pt", epochs=1)
    assert not torch.equal(before, model[0].weight) and torch.isfinite(model[0].weight).all()
    ck = torch.load(tmp_path / "h.pt", weights_only=False)
    assert ck["scaler"] is not None and ck["scaler"]["scale"] > 0
    resumed = train(cnn(), half, tmp_path / "h.pt", epochs=2)  # same fingerprint: resumes after epoch 1
    assert result.history[0]["epoch"] == 1 and resumed.resumed_from == 1 and len(resumed.history) == 2


def test_bfloat16_autocast_forward_runs_in_bf16():
    bf = Compute(torch.device("cpu"), amp_dtype=torch.bfloat16)
    with bf.autocast():
        out = nn.Linear(4, 2)(torch.randn(3, 4))
    assert out.dtype == torch.bfloat16 and not bf.needs_grad_scaler


def test_a_bf16_step_of_every_family_is_finite_and_close_to_fp32(family, frozen_mixed, xy):
    """The PWL objective (every term, the lattice mode) in bfloat16 autocast + channels_last against float32 on
    the same tiny batch: finite, same loss to bf16's precision, gradients pointing the same way."""
    cfg = arch_config(family).distill.loss.model_copy(update={"cross_mode": "lattice"})
    x, y = xy

    def step(mixed, compute):
        compute.module(mixed)
        with compute.autocast():
            loss = pwl_loss(mixed, compute.batch(x), y, cfg, random.Random(0))[0]
        grads = torch.autograd.grad(loss, [p for p in mixed.parameters() if p.requires_grad], allow_unused=True)
        return loss.float(), torch.cat([g.float().flatten() for g in grads if g is not None])

    l32, g32 = step(clone(frozen_mixed), CPU)
    l16, g16 = step(clone(frozen_mixed), Compute(torch.device("cpu"), amp_dtype=torch.bfloat16, channels_last=True))
    assert torch.isfinite(l16) and torch.isfinite(g16).all()
    assert abs(l16 - l32) <= 0.05 * abs(l32) + 1e-2
    assert F.cosine_similarity(g16, g32, dim=0) > 0.98
