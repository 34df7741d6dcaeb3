"""The compute layer on a CPU-only machine: device resolution, and the GPU code paths (autocast, gradient
scaling, channels_last) exercised on the CPU, where PyTorch supports them too."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pwl.compute import CPU, Compute, make_compute
from pwl.config import ComputeConfig, OptimConfig
from pwl.data import Normalizer, Split
from pwl.errors import PWLError
from pwl.evaluation import accuracy
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
    c = make_compute(ComputeConfig())
    assert c.device.type == "cpu" and c.amp_dtype is None and not c.channels_last and c.is_main
    with pytest.raises(PWLError, match="no CUDA device is visible"):
        make_compute(ComputeConfig(device="cuda"))


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
