"""The distillation objectives (METHOD.md), registered by name in OBJECTIVES: `pwl` (PWLObjective: `pwl_loss`,
one function per term, the cross term by `cross_mode` from CROSS_MODES) and `kd` (KDObjective: `kd_loss`).
A stage builds its objective here and hands it to pwl.train.fit, which calls it once per step."""
import functools
import random
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .mixing import MixedModel
from .states import STUDENT, TEACHER, all_states, label


def feature_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """d(a, b) = MSE(a, b) + mean over the batch of (1 - cos(flatten(a), flatten(b)))."""
    cos = F.cosine_similarity(a.flatten(1), b.flatten(1), dim=1)
    return F.mse_loss(a, b) + (1 - cos).mean()


def hard_loss(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(z, y)


def soft_loss(z_student: torch.Tensor, z_teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """T^2 * KL(softmax(z_t/T) || softmax(z_s/T)), averaged over the batch."""
    log_p_s = F.log_softmax(z_student / temperature, dim=1)
    log_p_t = F.log_softmax(z_teacher / temperature, dim=1)
    return temperature ** 2 * F.kl_div(log_p_s, log_p_t, reduction="batchmean", log_target=True)


def kd_loss(z_s: torch.Tensor, z_t: torch.Tensor, y: torch.Tensor, alpha: float, temperature: float):
    """Hinton's knowledge distillation, alpha * hard + (1 - alpha) * soft (stage `kd`); also returns the two
    weighted terms, which the stage logs."""
    terms = {"hard": alpha * hard_loss(z_s, y), "soft": (1 - alpha) * soft_loss(z_s, z_t, temperature)}
    return terms["hard"] + terms["soft"], terms


def sync_loss(f_s: list, f_t: list, conv) -> torch.Tensor:
    """Mean over inner boundaries of d(f_s, E(f_t)) + d(f_t, D(f_s))."""
    terms = [feature_distance(f_s[i], conv.enc[i](f_t[i])) + feature_distance(f_t[i], conv.dec[i](f_s[i]))
             for i in range(len(conv.enc))]
    return torch.stack(terms).mean()


def recon_loss(f_s: list, f_t: list, conv) -> torch.Tensor:
    """Mean over inner boundaries of d(f_t, D(E(f_t))) + d(f_s, E(D(f_s))): converters are near-inverse."""
    terms = [feature_distance(f_t[i], conv.dec[i](conv.enc[i](f_t[i])))
             + feature_distance(f_s[i], conv.enc[i](conv.dec[i](f_s[i]))) for i in range(len(conv.enc))]
    return torch.stack(terms).mean()


def sample_mixed_state(num_blocks: int, rng: random.Random) -> str:
    """Half the time one switch point with a random first owner, else i.i.d. per block; never all-S/all-T."""
    if rng.random() < 0.5:
        k, first = rng.randint(1, num_blocks - 1), rng.choice((STUDENT, TEACHER))
        second = TEACHER if first == STUDENT else STUDENT
        return first * k + second * (num_blocks - k)
    while True:
        state = "".join(rng.choice((STUDENT, TEACHER)) for _ in range(num_blocks))
        if len(set(state)) == 2:
            return state


def mixed_logits(mixed: MixedModel, state: str, f_s: list, f_t: list) -> torch.Tensor:
    """Logits of a mixed state, reusing the pure activations up to its first switch point."""
    switch = next(i for i, o in enumerate(state) if o != state[0])
    start = (f_t if state[0] == TEACHER else f_s)[switch - 1]
    return mixed.run_from(start, switch - 1, state[0], state)


def cross_random_loss(mixed: MixedModel, state: str, f_s: list, f_t: list, z_t, temperature: float):
    """KD from the teacher into one mixed state."""
    return soft_loss(mixed_logits(mixed, state, f_s, f_t), z_t, temperature)


def cross_all_loss(mixed: MixedModel, f_t: list, z_t, y, alpha: float, temperature: float):
    """For every boundary i, E_i(f_t^i) through student blocks i+1..N: hard + soft, averaged over i."""
    n, terms = mixed.num_blocks, []
    for i in range(n - 1):
        z = mixed.run_from(f_t[i], i, TEACHER, TEACHER * (i + 1) + STUDENT * (n - i - 1))
        terms.append(alpha * hard_loss(z, y) + (1 - alpha) * soft_loss(z, z_t, temperature))
    return torch.stack(terms).mean()


def state_loss(mixed: MixedModel, state: str, f_s: list, f_t: list, z_t, y, alpha: float, temperature: float):
    """hard + soft loss of one mixed state's logits."""
    z = mixed_logits(mixed, state, f_s, f_t)
    return alpha * hard_loss(z, y) + (1 - alpha) * soft_loss(z, z_t, temperature)


@functools.lru_cache(maxsize=None)
def lattice_pools(num_blocks: int) -> tuple[tuple[str, ...], ...]:
    """The mixed states that are not prefixes, grouped by kind (suffix, contiguous, other)."""
    pools: dict[str, list[str]] = {}
    for s in all_states(num_blocks):
        if label(s) in ("suffix", "contiguous", "other"):
            pools.setdefault(label(s), []).append(s)
    return tuple(tuple(p) for p in pools.values())


def sample_lattice_state(num_blocks: int, rng: random.Random) -> str:
    """Stratified: a kind uniformly, then a state of that kind uniformly. The kinds differ in size (for N = 5:
    4 suffix, 6 contiguous, 16 other states), and sampling states uniformly would starve the suffix ones."""
    return rng.choice(rng.choice(lattice_pools(num_blocks)))


def cross_lattice_loss(mixed: MixedModel, f_s: list, f_t: list, z_t, y, cfg, rng: random.Random):
    """Order-agnostic PWL: every prefix state (as `all`) plus `cfg.cross_samples` sampled non-prefix states,
    each with the task loss (hard + soft), averaged with equal weight per state.
    Why this mix: `all` alone never runs a decoder D_i, so any state with a student block in front of a teacher
    block collapses; the published `random` mode gives those states only a soft loss on one state per step and
    lets the prefix order dip. Keeping the prefix terms keeps the order that matters on device exact, and the
    hard label loss through D_i and the teacher's blocks gives every decoder a direct task signal."""
    n = mixed.num_blocks
    prefix = cross_all_loss(mixed, f_t, z_t, y, cfg.alpha, cfg.temperature)
    sampled = [state_loss(mixed, sample_lattice_state(n, rng), f_s, f_t, z_t, y, cfg.alpha, cfg.temperature)
               for _ in range(cfg.cross_samples)]
    return (prefix * (n - 1) + torch.stack(sampled).sum()) / (n - 1 + len(sampled))


@contextmanager
def frozen_bn_stats(module: nn.Module):
    """Normalise with batch statistics but leave running statistics untouched (momentum 0)."""
    bns = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [(m.momentum, m.num_batches_tracked.clone()) for m in bns]
    for m in bns:
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, (mom, tracked) in zip(bns, saved):
            m.momentum = mom
            m.num_batches_tracked.copy_(tracked)


@contextmanager
def bn_eval_mode(module: nn.Module):
    """Normalise with the running statistics, exactly as at inference, and leave them untouched: a mixed
    state is then trained the way it will be served (its converted features meet the student's BN stats)."""
    bns = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    modes = [m.training for m in bns]
    for m in bns:
        m.eval()
    try:
        yield
    finally:
        for m, mode in zip(bns, modes):
            m.train(mode)


# one implementation per name of pwl.schema.objective.MIXED_BN (what params may say)
MIXED_BN = {"freeze": frozen_bn_stats, "eval": bn_eval_mode, "update": lambda module: nullcontext()}


def _random_mode(mixed, f_s, f_t, z_t, y, cfg, rng):
    return cross_random_loss(mixed, sample_mixed_state(mixed.num_blocks, rng), f_s, f_t, z_t, cfg.temperature)


def _all_mode(mixed, f_s, f_t, z_t, y, cfg, rng):
    return cross_all_loss(mixed, f_t, z_t, y, cfg.alpha, cfg.temperature)


@dataclass(frozen=True)
class CrossMode:
    """How the cross term trains mixed states. `loss(mixed, f_s, f_t, z_t, y, cfg, rng)`;
    `find_unused_parameters`: some converters sit out a step (sampled states), which DDP must be told.
    What each mode does, in a line: pwl.schema.objective.CROSS_MODES (the names params may give)."""
    loss: Callable
    find_unused_parameters: bool


CROSS_MODES = {
    "random": CrossMode(_random_mode, True),
    "all": CrossMode(_all_mode, False),
    "lattice": CrossMode(cross_lattice_loss, True),
}


def aux_scale(progress: float, ramp: float) -> float:
    """Weight multiplier of the alignment terms: linear 0 -> 1 over the first `ramp` fraction of training."""
    return 1.0 if ramp <= 0 else min(1.0, progress / ramp)


def pwl_loss(mixed: MixedModel, x, y, cfg, rng: random.Random, progress: float = 1.0):
    """Total PWL loss, its terms and the student's logits. `cfg` (pwl.config.LossConfig) has alpha, temperature,
    w_sync, w_recon, w_cross, cross_mode, cross_samples, aux_ramp, mixed_bn_stats. The teacher is frozen (no
    gradient) and runs as `distill.teacher_bn` put it (pwl.teacher_bn): in eval mode, or a train-mode copy
    whose BatchNorm uses batch statistics."""
    with torch.no_grad():
        f_t = mixed.teacher.features(x)
        z_t = mixed.teacher.head(f_t[-1])
    f_s = mixed.student.features(x)
    z_s = mixed.student.head(f_s[-1])
    conv, T, a = mixed.converters, cfg.temperature, cfg.alpha
    scale = aux_scale(progress, cfg.aux_ramp)
    terms = {"hard": a * hard_loss(z_s, y), "soft": (1 - a) * soft_loss(z_s, z_t, T)}
    if cfg.w_sync and mixed.num_blocks > 1:
        terms["sync"] = scale * cfg.w_sync * sync_loss(f_s, f_t, conv)
    if cfg.w_recon and mixed.num_blocks > 1:
        terms["recon"] = scale * cfg.w_recon * recon_loss(f_s, f_t, conv)
    if cfg.w_cross and mixed.num_blocks > 1:
        with MIXED_BN[cfg.mixed_bn_stats](mixed.student):
            cross = CROSS_MODES[cfg.cross_mode].loss(mixed, f_s, f_t, z_t, y, cfg, rng)
        terms["cross"] = scale * cfg.w_cross * cross
    total = sum(terms.values())
    return total, {k: v.detach() for k, v in terms.items()}, z_s


@dataclass
class PWLObjective:
    """Stage `distill`: the PWL loss (`pwl_loss`) of the student and converters in `mixed` against its frozen
    teacher. `rng` draws the sampled mixed states (pwl.train.fit reseeds it every epoch)."""
    mixed: MixedModel
    cfg: object  # pwl.config.LossConfig
    rng: random.Random
    name = "pwl"

    @property
    def find_unused_parameters(self) -> bool:
        return CROSS_MODES[self.cfg.cross_mode].find_unused_parameters

    def __call__(self, x, y, progress: float):
        return pwl_loss(self.mixed, x, y, self.cfg, self.rng, progress)


@dataclass
class KDObjective:
    """Stage `kd`: Hinton's knowledge distillation (`kd_loss`) of `student` from the frozen `teacher`."""
    student: nn.Module
    teacher: nn.Module
    alpha: float
    temperature: float
    name = "kd"
    find_unused_parameters = False

    def __call__(self, x, y, progress: float):
        with torch.no_grad():
            z_t = self.teacher(x)
        z = self.student(x)
        loss, terms = kd_loss(z, z_t, y, self.alpha, self.temperature)
        return loss, {k: v.detach() for k, v in terms.items()}, z


# The distillation objectives by name (the name a stage trains under: its weights file and metrics).
OBJECTIVES = {o.name: o for o in (PWLObjective, KDObjective)}
