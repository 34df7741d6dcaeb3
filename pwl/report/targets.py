"""The targets for "every loading state usable", defined once: each report's targets table and the sweep tables
test against them. Every measure is in points of test accuracy, computed from one replica's states.csv."""
import pandas as pd

from ..states import STUDENT, prefix_order
from .tables import lattice_stats

# measure -> (floor, how a reader is told it)
TARGETS = {
    "worst_vs_all_S": (-2.0, "worst state >= all-S - 2"),
    "nonprefix_vs_all_S": (-0.5, "non-prefix mean >= all-S - 0.5"),
    "all_S_vs_scratch": (-1.0, "all-S >= scratch - 1"),
    "min_prefix_step": (-0.5, "every prefix step >= -0.5"),
}
MARGIN = -TARGETS["worst_vs_all_S"][0]  # a state more than this below all-S is one the worst-state target misses


def measures(acc: pd.Series, scratch: float) -> dict:
    """`acc`: state -> test %; `scratch`: the scratch student's test %. The worst state and every measure."""
    lat = lattice_stats(acc)
    prefix = [acc[s] for s in prefix_order(len(acc.index[0]))]
    return {"worst_state": lat["worst_state"], "worst_vs_all_S": lat["worst_vs_all_S"],
            "nonprefix_vs_all_S": lat["nonprefix_vs_all_S"], "all_S_vs_scratch": lat["all_S"] - scratch,
            "min_prefix_step": min(b - a for a, b in zip(prefix, prefix[1:]))}


def misses(row) -> list[str]:
    """The measures of `row` below their floor (a measure that does not exist, e.g. no non-prefix state, misses
    nothing)."""
    return [k for k, (floor, _) in TARGETS.items() if row.get(k) is not None and not pd.isna(row[k]) and row[k] < floor]


def states_below(acc: pd.Series) -> list[tuple[str, float]]:
    """(state, gap to all-S) of every state more than MARGIN points below all-S, worst first."""
    gap = acc - acc[STUDENT * len(acc.index[0])]
    low = gap[gap < -MARGIN].sort_values()
    return list(low.items())


def table(arch: str, accs: dict, scratch: dict) -> pd.DataFrame:
    """One row per replica (`accs`: seed -> state accuracies, `scratch`: seed -> scratch student's test %), and
    with several replicas their mean, which is what the targets are set on."""
    rows = [{"arch": arch, "replica": str(s), **measures(acc, scratch[s])} for s, acc in accs.items()]
    if len(rows) > 1:
        mean = {k: sum(r[k] for r in rows) / len(rows) for k in TARGETS if all(r[k] is not None for r in rows)}
        worst = {r["worst_state"] for r in rows}
        rows.append({"arch": arch, "replica": "mean", "worst_state": worst.pop() if len(worst) == 1 else "various",
                     **mean})
    out = pd.DataFrame(rows)
    out["misses"] = [", ".join(misses(r)) or "-" for r in out.to_dict("records")]
    return out
