"""Where training runs: CPU or CUDA, mixed precision, channels_last, and data-parallel ranks under torchrun.

Mixed precision is not only a GPU matter: a CPU with AMX-BF16 (or AVX512-BF16) trains our CNNs about twice as
fast in bfloat16 autocast with channels_last, and the ViT 1.2-1.7x with its attention kept in float32
(pwl.models.vit.CpuBf16Attention); bench/precision.py measures it. `resolve_amp` decides.

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

from .env import cpu_isa, machine
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
    def precision(self) -> str:
        """What the training steps compute in, as recorded in metrics and resume checkpoints."""
        amp = {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(self.amp_dtype, "fp32")
        return f"{amp}{'+channels_last' if self.channels_last else ''}"

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
        return {"device": str(self.device), "world_size": self.world_size, "precision": self.precision,
                "cpu_bf16": cpu_has_bf16(), **machine()}

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


def cpu_has_bf16() -> bool:
    """Native bfloat16 on this CPU (AMX-BF16 tiles or AVX512-BF16 dot products); elsewhere oneDNN emulates
    bf16 in float32 and autocast only adds casts."""
    return bool({"amx_bf16", "avx512_bf16"} & set(cpu_isa().split()))


def resolve_amp(amp: str, use_cuda: bool) -> torch.dtype | None:
    """The autocast dtype for params `compute.amp` on this machine: auto = bf16 on a GPU that has it (else fp16)
    and on a CPU where it is native, else float32."""
    if amp == "off":
        return None
    if use_cuda:
        if amp == "fp16" or not torch.cuda.is_bf16_supported():
            if amp == "bf16":
                raise PWLError("compute.amp=bf16 but this GPU has no bfloat16",
                               "set compute.amp=auto (float16 with gradient scaling here) or off")
            return torch.float16
        return torch.bfloat16
    if amp == "fp16":
        raise PWLError("compute.amp=fp16 is for GPUs: a CPU has no fast float16 training path",
                       "set compute.amp=auto (bfloat16 where the CPU has it natively) or off")
    if not cpu_has_bf16():
        if amp == "bf16":
            raise PWLError(f"compute.amp=bf16 but this CPU has no native bfloat16 (AMX-BF16 or AVX512-BF16; "
                           f"its flags: {cpu_isa()})", "set compute.amp=auto (float32 here) or off")
        return None
    return torch.bfloat16


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
    else:
        device = torch.device("cpu")
    amp = resolve_amp(cfg.amp, use_cuda)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo", rank=rank, world_size=world)
    return Compute(device, amp, cfg.channels_last != "off", cfg.data_on_device, rank, world)
