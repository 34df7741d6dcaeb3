"""Training replicas (`seeds`): each cell as mean ± std over seeds, and whether a difference is real.

A difference is paired by seed (seed k's PWL student against seed k's scratch student: both start from the
same data split, and PWL from that scratch student), so its spread is that of the per-seed differences:
standard error = std / sqrt(n), Student's t with n - 1 degrees of freedom, Holm-corrected over the table
(pwl.report.stats: "significant" is defined there once); with one seed nothing is tested."""
import math

import pandas as pd

from ..states import STUDENT, TEACHER, prefix_order
from . import stats


def replica_cells(summary_row: dict, states_df: pd.DataFrame) -> dict:
    """One seed's cells (test %): the models, every prefix state, and the lattice's worst state."""
    acc = states_df.set_index("state")["test_acc"]
    n = len(acc.index[0])
    cells = {"teacher": summary_row["teacher"], "scratch_student": summary_row["scratch_student"],
             "kd_student": summary_row.get("kd_student"), "prefix_mean": summary_row["prefix_mean"]}
    cells.update({state: acc[state] for state in prefix_order(n)})
    cells["worst_state"] = acc.min()
    return {k: v for k, v in cells.items() if v is not None and not pd.isna(v)}


def aggregate(per_seed: pd.DataFrame) -> pd.DataFrame:
    """`per_seed`: one row per seed (index), one column per cell -> cell, mean, std, n (std NaN for n = 1)."""
    return pd.DataFrame({"cell": per_seed.columns, "mean": per_seed.mean().values,
                         "std": per_seed.std(ddof=1).values, "n": per_seed.count().values})


def comparisons(per_seed: pd.DataFrame) -> list[tuple[str, str, str]]:
    """(what, a, b) pairs the report tests: PWL against the scratch student and KD, the teacher against the
    scratch student, and each step along the prefix order."""
    n = max(len(c) for c in per_seed.columns if set(c) <= {STUDENT, TEACHER})
    prefix = [s for s in prefix_order(n) if s in per_seed]
    pairs = [("PWL all-S - scratch", prefix[0], "scratch_student"), ("teacher - scratch", "teacher", "scratch_student")]
    if "kd_student" in per_seed:
        pairs.append(("PWL all-S - KD", prefix[0], "kd_student"))
    pairs += [(f"prefix step {a}->{b}", b, a) for a, b in zip(prefix, prefix[1:])]
    return pairs


def compare(per_seed: pd.DataFrame, pairs=None) -> pd.DataFrame:
    """Paired differences a - b over seeds: mean, std, standard error, n, t, p (two-sided, n - 1 df), p_holm
    (over every row of the table) and significant (p_holm < stats.ALPHA; None with one seed)."""
    rows = []
    for what, a, b in pairs or comparisons(per_seed):
        d = (per_seed[a] - per_seed[b]).dropna()
        n = len(d)
        std = d.std(ddof=1) if n > 1 else math.nan
        se = std / math.sqrt(n) if n > 1 else math.nan
        t, p = stats.paired_t(list(d))
        rows.append({"difference": what, "mean": d.mean(), "std": std, "se": se, "n": n, "t": t, "p": p})
    for row, adj in zip(rows, stats.holm([r["p"] for r in rows])):
        row["p_holm"] = adj
        row["significant"] = None if math.isnan(adj) else bool(adj < stats.ALPHA)
    return pd.DataFrame(rows)


def mean_pm_std(table: pd.DataFrame) -> pd.Series:
    """'88.05 ± 0.21' per row ('88.05' alone for one seed)."""
    return table.apply(lambda r: f"{r['mean']:.2f}" + ("" if pd.isna(r["std"]) else f" ± {r['std']:.2f}"), axis=1)
