"""Where training runs: CPU or CUDA, mixed precision, channels_last, and data-parallel ranks under torchrun.

One `Compute` object carries these choices so the training loop and the stages stay device-agnostic:
`compute.module(model)` places a model, `compute.split(split)` places a dataset split, `compute.autocast()`
wraps a forward pass, `compute.is_main` says whether this process writes outputs (rank 0 only).
"""
import dataclasses
import os
from contextlib import nullcontext
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from .env import machine
from .errors import PWLError


@dataclass
class Compute:
    device: torch.device
    amp_dtype: torch.dtype | None = None  # autocast dtype, None = full precision
    channels_last: bool = False
    data_on_device: bool = True
    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def needs_grad_scaler(self) -> bool:
        return self.amp_dtype == torch.float16

    def autocast(self):
        return torch.autocast(self.device.type, dtype=self.amp_dtype) if self.amp_dtype else nullcontext()

    def module(self, model: nn.Module) -> nn.Module:
        """Move a model to the device; CNNs (any 2-D convolution) go channels_last when asked for."""
        model.to(self.device)
        if self.channels_last and any(isinstance(m, nn.Conv2d) for m in model.modules()):
            model.to(memory_format=torch.channels_last)
        return model

    def split(self, split):
        """The whole uint8 split (a pwl.data.Split) on the GPU (a CIFAR train split is 138 MB), or pinned for
        non-blocking copies."""
        if self.device.type == "cpu":
            return split
        if self.data_on_device:
            return dataclasses.replace(split, x=split.x.to(self.device), y=split.y.to(self.device))
        return dataclasses.replace(split, x=split.x.pin_memory(), y=split.y.pin_memory())

    @property
    def record(self) -> dict:
        """Where a stage ran, for its metrics file: with the threads and CPU kernels (and GPU) that decide
        whether another run can reproduce its floats bit for bit (pwl.env.machine)."""
        return {"device": str(self.device), "world_size": self.world_size, **machine()}

    def batch(self, x: torch.Tensor) -> torch.Tensor:
        """A batch on the device, in the model's memory format."""
        x = x.to(self.device, non_blocking=True)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last and x.dim() == 4 else x


CPU = Compute(torch.device("cpu"))


def set_threads(n: int) -> int:
    """n torch threads; 0 = every core, shared among the processes torchrun starts on this machine."""
    n = n or max(1, (os.cpu_count() or 1) // int(os.environ.get("LOCAL_WORLD_SIZE", 1)))
    torch.set_num_threads(n)
    return n


def seed_and_threads(params) -> None:
    """A torch stage's first step once params are valid: `params.threads` torch threads, and the global seed
    (model initialisation is part of the experiment: seeded before anything is built)."""
    set_threads(params.threads)
    torch.manual_seed(params.seed)


def _world() -> tuple[int, int, int]:
    """(rank, local rank, world size) from torchrun's environment; (0, 0, 1) for a plain process."""
    return (int(os.environ.get("RANK", 0)), int(os.environ.get("LOCAL_RANK", 0)),
            int(os.environ.get("WORLD_SIZE", 1)))


def make_compute(cfg) -> Compute:
    """Resolve params `compute` (device auto|cpu|cuda, amp, channels_last, data_on_device) for this process,
    joining the torchrun process group when WORLD_SIZE > 1 (NCCL on CUDA, gloo on the CPU)."""
    rank, local_rank, world = _world()
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise PWLError("compute.device is cuda but no CUDA device is visible to PyTorch",
                       "set compute.device=auto (or cpu), or run on a machine with a GPU and a CUDA build of torch")
    use_cuda = cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available())
    if use_cuda:
        if local_rank >= torch.cuda.device_count():
            raise PWLError(f"local rank {local_rank} has no GPU ({torch.cuda.device_count()} visible)",
                           "start torchrun with --nproc_per_node <= the number of GPUs")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
        torch.backends.cudnn.benchmark = True
        amp = (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16) if cfg.amp else None
    else:
        device, amp = torch.device("cpu"), None  # AMP is a GPU speed-up; CPU runs stay in float32
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo", rank=rank, world_size=world)
    return Compute(device, amp, bool(cfg.channels_last and use_cuda), cfg.data_on_device, rank, world)
