"""Accuracy of a model, and its weight bytes per block. (Every loading state's accuracy: pwl.mixing.)"""
from typing import Callable

import torch

from .compute import CPU, Compute
from .data import Normalizer, Split


@torch.no_grad()
def accuracy(forward: Callable, split: Split, norm: Normalizer, batch_size: int, compute: Compute = CPU) -> float:
    """Top-1 accuracy of `forward` on a split, in batches."""
    correct = 0
    for i in range(0, len(split.y), batch_size):
        logits = forward(norm(compute.batch(split.x[i:i + batch_size])))
        correct += (logits.argmax(1) == split.y[i:i + batch_size].to(logits.device)).sum().item()
    return correct / max(1, len(split.y))


def block_bytes(net) -> list[int]:
    """Bytes of weights (parameters and buffers) per block; embedder counted in block 1, head in block N."""
    def size(m):
        return sum(t.numel() * t.element_size() for t in m.state_dict().values())
    out = [size(b) for b in net.blocks]
    out[0] += size(net.embed)
    out[-1] += size(net.head)
    return out
