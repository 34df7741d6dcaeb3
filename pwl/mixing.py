"""Feature converters and the mixed student/teacher model that runs any loading state."""
import torch
import torch.nn.functional as F
from torch import nn

from .errors import PWLError
from .models.blocknet import BlockNet
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


def check_pairing(teacher_widths: list[int], student_widths: list[int]) -> None:
    if len(teacher_widths) != len(student_widths):
        raise PWLError(f"teacher has {len(teacher_widths)} blocks but student has {len(student_widths)}",
                       "PWL swaps block i of one for block i of the other: give both the same number of blocks")
    wider = [i + 1 for i, (t, s) in enumerate(zip(teacher_widths, student_widths)) if s > t]
    if wider:
        raise PWLError(f"student is wider than the teacher at block(s) {wider} "
                       f"(student {student_widths} vs teacher {teacher_widths})",
                       "make every student width <= the teacher's width at the same block")


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
