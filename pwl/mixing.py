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
from .schema.converters import CONVERTER_KINDS, ConverterConfig
from .schema.objective import check_pairing
from .states import STUDENT, TEACHER


CONVERTERS: dict[str, type[nn.Module]] = {}  # kind name -> module class (names: pwl.schema.converters)


def register_converter(name: str):
    """Class decorator: register a converter kind under `name` (one of pwl.schema.converters.CONVERTER_KINDS).
    A kind is built as `cls(cin, cout, cfg)` and maps (B,C,H,W) or (B,tokens,C) features from cin to cout."""
    def add(cls):
        if name not in CONVERTER_KINDS or name in CONVERTERS:
            raise ValueError(f"converter kind {name!r} is not declared in pwl.schema.converters or registered twice")
        cls.kind = name
        CONVERTERS[name] = cls
        return cls
    return add


def channel_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """A linear map over the channel dimension: 1x1 conv for (B,C,H,W), linear over the last dim for tokens."""
    if x.dim() == 4:
        return F.conv2d(x, weight[:, :, None, None], bias)
    return F.linear(x, weight, bias)


@register_converter("linear")
class ChannelMap(nn.Module):
    """A linear map over the channel dimension: 1x1 conv for (B,C,H,W), linear over the last dim for tokens."""

    def __init__(self, cin: int, cout: int, cfg: ConverterConfig | None = None, bias: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(cout, cin))
        self.bias = nn.Parameter(torch.zeros(cout)) if bias else None
        nn.init.kaiming_uniform_(self.weight, a=5 ** 0.5)

    def forward(self, x):
        return channel_linear(x, self.weight, self.bias)


class ResidualDecoder(nn.Module):
    """The linear map plus a residual branch over its output whose last layer starts at zero, so training starts
    from exactly the linear map and the branch learns what a linear map cannot decode."""

    def __init__(self, cin: int, cout: int, cfg: ConverterConfig):
        super().__init__()
        self.linear = ChannelMap(cin, cout)
        self.branch = self.make_branch(cout, max(1, round(cout * cfg.hidden_ratio)))
        nn.init.zeros_(self.branch[-1].weight)
        nn.init.zeros_(self.branch[-1].bias)

    def make_branch(self, width: int, hidden: int) -> nn.Sequential:
        raise NotImplementedError

    def forward(self, x):
        y = self.linear(x)
        return y + self.branch(y)


@register_converter("conv3x3")
class Conv3x3Converter(ResidualDecoder):
    """CNN features: a bottleneck that sees each position's 3x3 neighbourhood."""

    def make_branch(self, width: int, hidden: int) -> nn.Sequential:
        return nn.Sequential(nn.Conv2d(width, hidden, 3, padding=1), nn.ReLU(), nn.Conv2d(hidden, width, 1))


@register_converter("mlp")
class MLPConverter(ResidualDecoder):
    """ViT tokens: a pre-norm MLP over each token, as in a transformer layer."""

    def make_branch(self, width: int, hidden: int) -> nn.Sequential:
        return nn.Sequential(nn.LayerNorm(width), nn.Linear(width, hidden), nn.GELU(), nn.Linear(hidden, width))


@register_converter("lowrank")
class LowRankConverter(nn.Module):
    """SN-Netv2's stitching layer: the linear map plus a rank-`rank` update B A whose B starts at zero."""

    def __init__(self, cin: int, cout: int, cfg: ConverterConfig):
        super().__init__()
        rank = min(cfg.rank, cin, cout)
        self.linear = ChannelMap(cin, cout)
        self.down = ChannelMap(cin, rank, bias=False)
        self.up = ChannelMap(rank, cout, bias=False)
        nn.init.zeros_(self.up.weight)

    def forward(self, x):
        return self.linear(x) + self.up(self.down(x))


def converter(cin: int, cout: int, cfg: ConverterConfig | None = None) -> nn.Module:
    """The converter of kind `cfg.kind` (default linear) from cin to cout channels; equal widths need none."""
    cfg = cfg or ConverterConfig()
    return nn.Identity() if cin == cout else CONVERTERS[cfg.kind](cin, cout, cfg)


class Converters(nn.Module):
    """E_i: teacher width -> student width and D_i: student -> teacher, at each inner boundary i = 1..N-1."""

    def __init__(self, teacher_widths: list[int], student_widths: list[int], cfg: ConverterConfig | None = None):
        super().__init__()
        check_pairing(teacher_widths, student_widths)
        self.cfg = cfg or ConverterConfig()
        inner = list(zip(teacher_widths, student_widths))[:-1]
        self.enc = nn.ModuleList(converter(t, s, self.cfg) for t, s in inner)
        self.dec = nn.ModuleList(converter(s, t, self.cfg) for t, s in inner)

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
    return MixedModel(teacher, student, Converters(teacher.block_widths, student.block_widths,
                                                   arch_cfg.distill.converter))


def distilled_parts(mixed: MixedModel) -> nn.ModuleDict:
    """What distillation trains and saves: the student and the converters (the teacher stays frozen)."""
    return nn.ModuleDict({"student": mixed.student, "converters": mixed.converters})


def load_trained_mixed(arch: str, arch_cfg, ds, seed, pwl_file: Path | None = None) -> MixedModel:
    mixed = build_mixed(arch_cfg, ds)
    load_weights(paths.weights(arch, "teacher", seed), mixed.teacher)
    load_weights(pwl_file or paths.weights(arch, "pwl", seed), distilled_parts(mixed))
    return freeze(mixed)
