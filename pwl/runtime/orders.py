"""Loading orders chosen by value: the order of teacher blocks that maximises the area under (validation)
accuracy against the *modelled* time since launch on one device.

The analytical model of `simulate.predicted_timeline` reads the student, answers, then reads the teacher
blocks one request after the other; block j costs `open_latency + bytes_j / bandwidth`. The time until the
model is complete is the same for every order, so the area under the accuracy curve over any horizon past it
differs between orders only by sum_k acc(state_k) x cost(block loaded next): state_k is served while the next
block loads. (What this leaves out: the converter bytes a step reads depend on the order, a few hundred bytes
to a few KB against blocks of tens to hundreds of KB, and build times overlap the next read.) That is exactly the objective of `pwl.states.best_order` with block costs in
modelled seconds, solved exactly by dynamic programming over the 2^N subsets (N <= 8 here: 256 states).
"""
from typing import Optional

from ..states import best_order, changed_block
from .pack import PackIndex, teacher_part


def block_seconds(index: PackIndex, profile, build_s: Optional[dict] = None) -> list[float]:
    """Modelled seconds to bring in each teacher block (1..N) of the pack `index` on `profile`: open latency +
    its bytes in the pack / bandwidth, plus its build time when `build_s` (`teacher_<i>` -> seconds) is given."""
    build = build_s or {}
    return [profile.open_latency_s + index.part_bytes(teacher_part(i)) / profile.read_bandwidth
            + build.get(teacher_part(i), 0.0) for i in range(1, index.num_blocks + 1)]


def value_order(accuracy: dict[str, float], index: PackIndex, profile, build_s: Optional[dict] = None) -> list[str]:
    """The order with the largest area under `accuracy` (pass *validation* accuracies) against modelled time."""
    return best_order(accuracy, block_seconds(index, profile, build_s))


def order_area(order: list[str], accuracy: dict[str, float], costs: list[float]) -> float:
    """The part of the area that depends on the order: each state times the cost of the block loaded next."""
    return sum(accuracy[a] * costs[changed_block(a, b)] for a, b in zip(order, order[1:]))
