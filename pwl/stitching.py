"""Least-squares initialisation of the converters from paired activations (SN-Net, arXiv 2302.06586, section 3.2).

Before distillation trains them, each converter's linear map can start as the best linear map (in the least-squares
sense) between the two networks' features at its boundary, measured on training images: E_b maps teacher block b's
output to the student's, D_b the student's to the teacher's. Every position (CNN pixel, ViT token) of every image is
one sample of a regression over channels. The residual kinds (conv3x3, mlp, lowrank) start as their linear map, so
they start from the fit too. `distill.converter_init: lstsq` turns it on (`random`: the module's own init)."""
import torch
from torch import nn

from .compute import CPU, Compute
from .data import Normalizer, Split


def linear_part(conv: nn.Module) -> nn.Module | None:
    """The linear map over channels inside a converter (the converter itself for `linear`); None for identity."""
    if isinstance(conv, nn.Identity):
        return None
    return getattr(conv, "linear", conv)


def _rows(f: torch.Tensor) -> torch.Tensor:
    """(B,C,H,W) or (B,T,C) features -> (samples, C) in float64: every position is one sample."""
    f = f.permute(0, 2, 3, 1) if f.dim() == 4 else f
    return f.reshape(-1, f.shape[-1]).double()


class NormalEquations:
    """Running sums for a ridge regression y ~ W x + b over many batches: X'X, X'Y, Y'Y with a column of ones."""

    def __init__(self):
        self.xx = self.xy = self.yy = self.ysum = None
        self.n = 0

    def add(self, x: torch.Tensor, y: torch.Tensor) -> None:
        x = torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype, device=x.device)], 1)
        parts = (x.T @ x, x.T @ y, (y * y).sum(0), y.sum(0))
        if self.xx is None:
            self.xx, self.xy, self.yy, self.ysum = parts
        else:
            self.xx, self.xy, self.yy, self.ysum = (a + b for a, b in zip((self.xx, self.xy, self.yy, self.ysum),
                                                                           parts))
        self.n += len(x)

    def solve(self, ridge: float) -> tuple[torch.Tensor, torch.Tensor, float]:
        """(W, b, fraction of y's variance left unexplained). `ridge` scales the mean diagonal of X'X, so the
        penalty does not depend on the features' scale; the bias is not penalised."""
        d = self.xx.shape[0] - 1
        reg = torch.zeros_like(self.xx)
        reg.diagonal()[:d] = ridge * self.xx.diagonal()[:d].mean().clamp_min(1e-12)
        sol = torch.linalg.solve(self.xx + reg, self.xy)  # (d+1, out)
        sse = self.yy.sum() - 2 * (sol * self.xy).sum() + (sol * (self.xx @ sol)).sum()
        sst = (self.yy - self.ysum ** 2 / self.n).sum().clamp_min(1e-12)
        return sol[:d].T.contiguous(), sol[d].contiguous(), float((sse / sst).clamp_min(0))


@torch.no_grad()
def fit_converters(mixed, split: Split, norm: Normalizer, images: int, batch_size: int,
                   compute: Compute = CPU, ridge: float = 1e-4) -> dict[str, float]:
    """Set every converter's linear map of `mixed` to the ridge least-squares fit between the teacher's and the
    student's block outputs on the first `images` images of `split` (unaugmented, both networks in eval mode, full
    precision). Returns each fitted converter's unexplained variance fraction, e.g. {"enc.0": 0.31, ...}."""
    modes = [(m, m.training) for m in (mixed.teacher, mixed.student)]
    for m, _ in modes:
        m.eval()
    conv = mixed.converters
    wanted = {f"{side}.{b}": (b, side) for side in ("enc", "dec") for b, c in enumerate(getattr(conv, side))
              if linear_part(c) is not None}
    sums = {name: NormalEquations() for name in wanted}
    n = min(images, len(split.y))
    for i in range(0, n, batch_size):
        x = norm(compute.batch(split.x[i:min(n, i + batch_size)]))
        ft, fs = mixed.teacher.features(x), mixed.student.features(x)
        for name, (b, side) in wanted.items():
            src, dst = (ft[b], fs[b]) if side == "enc" else (fs[b], ft[b])
            sums[name].add(_rows(src), _rows(dst))
    unexplained = {}
    for name, (b, side) in wanted.items():
        w, bias, unexplained[name] = sums[name].solve(ridge)
        lin = linear_part(getattr(conv, side)[b])
        lin.weight.copy_(w.to(lin.weight.dtype))
        if lin.bias is not None:
            lin.bias.copy_(bias.to(lin.bias.dtype))
    for m, was in modes:
        m.train(was)
    return unexplained
