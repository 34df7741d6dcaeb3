"""Stop training at the first non-finite loss or gradient instead of writing NaN weights as if all were well.

Why a guard and not a check of the final weights: once a loss is NaN every later step is wasted and the
selected epoch may silently be a NaN one. The guard reads values the step computed anyway (the loss and the
gradients still held after `optimizer.step()`), draws no random numbers and changes no computation, so a
finite run is bit-identical with or without it. On the CPU it checks every step; on a GPU it checks in
batches (and always before an epoch ends) so that no step waits for a device-to-host copy. Under DDP the
ranks agree on the verdict (gradients are averaged anyway; losses are compared by one all-reduce per check).
"""
import math

import torch
import torch.distributed as dist

from .errors import PWLError

STAGE_OF_ROLE = {"teacher": "train_teacher", "student": "train_student", "pwl": "distill", "kd": "kd"}


def stage_name(desc: str) -> str:
    """'vgg/teacher' (fit's `desc`) -> 'train_teacher@vgg', the dvc.yaml stage a user reruns."""
    arch, _, role = desc.partition("/")
    return f"{STAGE_OF_ROLE[role]}@{arch} ({desc})" if role in STAGE_OF_ROLE else desc


class FiniteGuard:
    """`step(loss, epoch, step)` after every optimiser step, `flush()` before an epoch's results are used."""

    def __init__(self, optimizer: torch.optim.Optimizer, desc: str, steps: int, device: torch.device,
                 check_grads: bool = True, every: int | None = None):
        # float16 + GradScaler: an inf gradient is expected now and then (the scaler skips that step)
        self.params = [p for g in optimizer.param_groups for p in g["params"] if p.requires_grad]
        self.desc, self.steps, self.check_grads = desc, steps, check_grads
        self.every = every or (1 if device.type == "cpu" else 64)
        self.pending: list[tuple[int, int, torch.Tensor]] = []

    def step(self, loss: torch.Tensor, epoch: int, step: int) -> None:
        vals = [loss.detach().float().reshape(())]
        grads = [p.grad for p in self.params if p.grad is not None] if self.check_grads else []
        if grads:
            vals.append(torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)).float()))
        self.pending.append((epoch, step, torch.stack(vals) if len(vals) > 1 else vals[0].reshape(1)))
        if len(self.pending) >= self.every:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        pending, self.pending = self.pending, []
        width = max(v.numel() for *_, v in pending)
        vals = torch.stack([torch.nn.functional.pad(v, (0, width - v.numel())) for *_, v in pending])
        ok = torch.isfinite(vals).all(1).to(torch.int32)
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(ok, op=dist.ReduceOp.MIN)  # every rank stops at the same step
        if bool(ok.all()):
            return
        i = int((ok == 0).nonzero()[0])
        epoch, step, v = pending[i]
        loss = v[0].item()
        what = (f"loss ({loss})" if not math.isfinite(loss)
                else f"gradient (norm {v[1].item()}; loss {loss:.4g})" if v.numel() > 1 else "loss on another rank")
        kept = (f"the resume checkpoint of epoch {epoch - 1} is kept" if epoch > 1
                else "no epoch had finished, so there is no resume checkpoint")
        raise PWLError(f"{stage_name(self.desc)}: non-finite {what} at epoch {epoch}, step {step} of {self.steps}; "
                       f"training stopped, no weights or metrics written, {kept}",
                       "lower the learning rate or the loss weights of this stage (or look for bad values in "
                       "the data), then rerun")
