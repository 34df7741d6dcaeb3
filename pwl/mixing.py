"""Feature converters and the mixed student/teacher model: built from params, loaded from the trained weights,
run in any loading state, and every state's accuracy."""
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from . import paths
from .build import build, freeze
from .checkpoints import load_weights
from .compute import CPU, Compute
from .data import Normalizer, Split
from .models.blocknet import BlockNet
from .schema.objective import check_pairing
from .states import STUDENT, TEACHER


class ChannelMap(nn.Module):
    """A linear map over the channel dimension: 1x1 conv for (B,C,H,W), linear over the last dim for tokens."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(cout, cin))
        self.bias = nn.Parameter(torch.zeros(cout))
        nn.init.kaiming_uniform_(self.weight, a=5 ** 0.5)

    def forward(self, x):
        if x.dim() == 4:
            return F.conv2d(x, self.weight[:, :, None, None], self.bias)
        return F.linear(x, self.weight, self.bias)


def converter(cin: int, cout: int) -> nn.Module:
    return nn.Identity() if cin == cout else ChannelMap(cin, cout)


class Converters(nn.Module):
    """E_i: teacher width -> student width and D_i: student -> teacher, at each inner boundary i = 1..N-1."""

    def __init__(self, teacher_widths: list[int], student_widths: list[int]):
        super().__init__()
        check_pairing(teacher_widths, student_widths)
        inner = list(zip(teacher_widths, student_widths))[:-1]
        self.enc = nn.ModuleList(converter(t, s) for t, s in inner)
        self.dec = nn.ModuleList(converter(s, t) for t, s in inner)

    def convert(self, f: torch.Tensor, boundary: int, src: str, dst: str) -> torch.Tensor:
        """Carry the output of block `boundary` (0-based) from owner `src` to owner `dst`."""
        if src == dst:
            return f
        return (self.enc if src == TEACHER else self.dec)[boundary](f)


class MixedModel(nn.Module):
    """Teacher, student and converters; `forward(x, state)` runs one loading state such as 'TTSS'."""

    def __init__(self, teacher: BlockNet, student: BlockNet, converters: Converters):
        super().__init__()
        self.teacher, self.student, self.converters = teacher, student, converters
        self.num_blocks = teacher.num_blocks

    def net(self, owner: str) -> BlockNet:
        return self.teacher if owner == TEACHER else self.student

    def run_from(self, f: torch.Tensor, block: int, owner: str, state: str) -> torch.Tensor:
        """Continue from `f`, the output of block `block` (0-based) computed by `owner`, to logits of `state`."""
        for j in range(block + 1, self.num_blocks):
            f = self.converters.convert(f, j - 1, owner, state[j])
            owner = state[j]
            f = self.net(owner).blocks[j](f)
        return self.net(owner).head(f)

    def forward(self, x: torch.Tensor, state: str) -> torch.Tensor:
        first = self.net(state[0])
        return self.run_from(first.blocks[0](first.embed(x)), 0, state[0], state)


@torch.no_grad()
def logits_of_all_states(mixed: MixedModel, x: torch.Tensor, states: list[str]) -> dict[str, torch.Tensor]:
    """Logits of many states sharing work along common prefixes: at most 2^(N+1)-2 block passes for all 2^N."""
    wanted, out, n = set(states), {}, mixed.num_blocks

    def walk(prefix: str, f: torch.Tensor, owner: str):
        if len(prefix) == n:
            if prefix in wanted:
                out[prefix] = mixed.net(owner).head(f)
            return
        for nxt in (STUDENT, TEACHER):
            candidate = prefix + nxt
            if not any(s.startswith(candidate) for s in wanted):
                continue
            g = mixed.converters.convert(f, len(prefix) - 1, owner, nxt) if prefix else mixed.net(nxt).embed(x)
            walk(candidate, mixed.net(nxt).blocks[len(prefix)](g), nxt)

    walk("", x, "")
    return out


@torch.no_grad()
def state_accuracies(mixed: MixedModel, states: list[str], split: Split, norm: Normalizer,
                     batch_size: int, compute: Compute = CPU) -> dict[str, float]:
    """Full precision on purpose: these are the published numbers, whatever precision training used."""
    correct = dict.fromkeys(states, 0)
    for i in range(0, len(split.y), batch_size):
        x = norm(compute.batch(split.x[i:i + batch_size]))
        y = split.y[i:i + batch_size].to(x.device)
        for state, logits in logits_of_all_states(mixed, x, states).items():
            correct[state] += (logits.argmax(1) == y).sum()
    return {s: int(c) / max(1, len(split.y)) for s, c in correct.items()}


def build_mixed(arch_cfg, ds) -> MixedModel:
    teacher, student = build(arch_cfg.teacher, ds), build(arch_cfg.student, ds)
    return MixedModel(teacher, student, Converters(teacher.block_widths, student.block_widths))


def distilled_parts(mixed: MixedModel) -> nn.ModuleDict:
    """What distillation trains and saves: the student and the converters (the teacher stays frozen)."""
    return nn.ModuleDict({"student": mixed.student, "converters": mixed.converters})


def load_trained_mixed(arch: str, arch_cfg, ds, seed, pwl_file: Path | None = None) -> MixedModel:
    mixed = build_mixed(arch_cfg, ds)
    load_weights(paths.weights(arch, "teacher", seed), mixed.teacher)
    load_weights(pwl_file or paths.weights(arch, "pwl", seed), distilled_parts(mixed))
    return freeze(mixed)
