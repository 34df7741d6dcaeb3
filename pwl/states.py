"""Loading states: masks over blocks written as strings, 'T' = teacher block, 'S' = student block.

The first character is block 1 (input side). The embedder belongs to block 1's owner, the head to block N's.
"""
import itertools
import re

from .errors import PWLError

TEACHER, STUDENT = "T", "S"


def parse_state(text: str, num_blocks: int) -> str:
    s = str(text).strip().upper()
    if len(s) != num_blocks or not re.fullmatch(r"[ST]+", s):
        raise PWLError(f"loading state {text!r} is not a string of {num_blocks} letters S/T",
                       f"write one letter per block, input side first, e.g. {'T' + 'S' * (num_blocks - 1)}")
    return s


def all_states(num_blocks: int) -> list[str]:
    """All 2^N states in lexicographic order (S < T), so states sharing a prefix are adjacent."""
    return ["".join(p) for p in itertools.product((STUDENT, TEACHER), repeat=num_blocks)]


def prefix_order(num_blocks: int) -> list[str]:
    """Teacher blocks load from the input side: SSSS, TSSS, ..., TTTT."""
    return [TEACHER * k + STUDENT * (num_blocks - k) for k in range(num_blocks + 1)]


def suffix_order(num_blocks: int) -> list[str]:
    """Teacher blocks load from the output side: SSSS, SSST, ..., TTTT."""
    return [STUDENT * (num_blocks - k) + TEACHER * k for k in range(num_blocks + 1)]


def prefix_mean(accuracy: dict[str, float], num_blocks: int) -> float:
    """Mean accuracy of the prefix order's states *before* all-T (SSSS, TSSS, TTSS, TTTS): what PWL serves
    while the teacher loads. All-T is left out on purpose: it is the teacher itself, which distillation
    cannot change, so as a selection score it would only dilute the states that PWL trains."""
    served = prefix_order(num_blocks)[:-1]
    return sum(accuracy[s] for s in served) / len(served)


def label(state: str) -> str:
    """student / teacher / prefix / suffix / contiguous (one inner run of T) / other."""
    if set(state) == {STUDENT}:
        return "student"
    if set(state) == {TEACHER}:
        return "teacher"
    if re.fullmatch(r"T+S+", state):
        return "prefix"
    if re.fullmatch(r"S+T+", state):
        return "suffix"
    if re.fullmatch(r"S+T+S+", state):
        return "contiguous"
    return "other"


LATTICE_MARGIN = 0.01  # a state more than this below all-S (as a fraction) counts as "below all-S"


def lattice_summary(accuracy: dict[str, float]) -> dict:
    """How good is *every* loading state, not just the prefix order: the worst state and its gap to all-S, the
    mean over the mixed states that are not prefixes (and its gap), how many states fall more than
    LATTICE_MARGIN below all-S, and min / mean per label. Accuracies as fractions, one per state."""
    n = len(next(iter(accuracy)))
    all_s = accuracy[STUDENT * n]
    worst = min(accuracy, key=accuracy.get)
    nonprefix = [a for s, a in accuracy.items() if label(s) in ("suffix", "contiguous", "other")]
    by_label: dict[str, list[float]] = {}
    for s, a in accuracy.items():
        by_label.setdefault(label(s), []).append(a)
    mean = sum(nonprefix) / len(nonprefix) if nonprefix else None
    return {"worst_state": worst, "worst": accuracy[worst], "worst_vs_all_S": accuracy[worst] - all_s,
            "nonprefix_mixed_mean": mean, "nonprefix_vs_all_S": None if mean is None else mean - all_s,
            "below_all_S": sum(a < all_s - LATTICE_MARGIN for a in accuracy.values()),
            "by_label": {k: {"min": min(v), "mean": sum(v) / len(v), "states": len(v)} for k, v in by_label.items()}}


def converter_switches(state: str) -> list[tuple[str, int]]:
    """The converters `state` runs: at each inner boundary b (0-based) where the owner changes, ("enc", b)
    carries teacher features to a student block, ("dec", b) student features to a teacher block. The one rule
    for which converters a state needs: its bytes (pwl.budget) and its pack parts (pwl.runtime.pack)."""
    return [("enc" if a == TEACHER else "dec", b) for b, (a, c) in enumerate(zip(state, state[1:])) if a != c]


def is_order(states: list[str]) -> bool:
    """A valid loading order adds exactly one teacher block per step, from all-S to all-T."""
    if not states or set(states[0]) != {STUDENT} or set(states[-1]) != {TEACHER}:
        return False
    return all(sum(a != b for a, b in zip(x, y)) == 1 and y.count(TEACHER) == x.count(TEACHER) + 1
               for x, y in zip(states, states[1:]))


def changed_block(before: str, after: str) -> int:
    """The one block (0-based) in which two states of a loading order differ."""
    diff = [j for j, (a, b) in enumerate(zip(before, after)) if a != b]
    if len(diff) != 1 or len(before) != len(after):
        raise PWLError(f"states {before} and {after} differ in {len(diff)} blocks, not one",
                       "consecutive states of a loading order add exactly one teacher block")
    return diff[0]


def best_order(accuracy: dict[str, float], block_cost: list[float]) -> list[str]:
    """The loading order (all-S -> all-T, one teacher block per step) with the largest area under accuracy
    against load time: state s is served while the next block loads, for a time proportional to its cost.
    Dynamic programming over the 2^N states; pass *validation* accuracies so the test set stays unseen."""
    n = len(block_cost)
    best = {STUDENT * n: (0.0, [STUDENT * n])}
    for k in range(n):
        nxt = {}
        for state, (area, path) in best.items():
            for j in (j for j in range(n) if state[j] == STUDENT):
                new = state[:j] + TEACHER + state[j + 1:]
                cand = (area + accuracy[state] * block_cost[j], path + [new])
                if new not in nxt or cand[0] > nxt[new][0]:
                    nxt[new] = cand
        best = nxt
    return best[TEACHER * n][1]
