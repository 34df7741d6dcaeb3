"""Figures (PNG) for the report; every number drawn comes from a pipeline file via report.tables. Each function
returns the data it drew (JSON-able), which the report keeps in tables/figure_data.json: `--check` compares that data,
not PNG bytes. Legends sit outside the axes (right), so they never hide a data point."""
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402

from .stats import wilson_half_pct  # noqa: E402

LEGEND = {"loc": "upper left", "bbox_to_anchor": (1.02, 1.0), "fontsize": 7, "borderaxespad": 0.0}
REF_STYLES = {"teacher": ("k", "-"), "KD student": ("tab:purple", "--"), "scratch student": ("tab:red", ":"),
              "PWL all-S": ("tab:blue", "-.")}


def _save(fig, out: Path) -> None:
    fig.savefig(out, dpi=110, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)


def _finish(fig, ax, out: Path, xlabel: str, title: str) -> None:
    """The single-panel accuracy figures' common end: labels, grid, the legend outside the data, the file."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(**LEGEND)
    _save(fig, out)


def _refs(row) -> dict:
    """The reference accuracies every accuracy figure draws as horizontal lines (KD only where it ran)."""
    refs = {"teacher": row.teacher, "KD student": row.kd_student, "scratch student": row.scratch_student,
            "PWL all-S": row.pwl_all_S}
    return {k: float(v) for k, v in refs.items() if v is not None and v == v}


def _hlines(ax, refs: dict) -> None:
    for name, v in refs.items():
        color, ls = REF_STYLES[name]
        ax.axhline(v, color=color, ls=ls, lw=0.9, label=f"{name} {v:.2f}", zorder=1)


def loading_orders(orders, row, arch: str, n_test: int, spread, out: Path) -> dict:
    """Test accuracy against teacher blocks loaded along the prefix and suffix orders, one panel, with 95% Wilson
    intervals (n = test images) and, with several seeds, the prefix order's mean ± std over seeds; the teacher,
    the KD and scratch students and PWL all-S as reference lines. The y range covers every point and line."""
    fig, ax = plt.subplots(figsize=(7.2, 3.8))
    x = list(orders["teacher_blocks"])
    data = {"x": x, "refs": _refs(row)}
    for key, style, name in (("prefix", "o-", "prefix (input side first)"), ("suffix", "s--", "suffix (output side first)")):
        y = [float(v) for v in orders[f"{key}_test_acc"]]
        err = [wilson_half_pct(v, n_test) for v in y]
        ax.errorbar(x, y, yerr=err, fmt=style, capsize=3, ms=4, label=f"{name}, ±95% Wilson", zorder=3)
        data[key] = {"states": list(orders[f"{key}_state"]), "acc": y, "err": err}
    if spread is not None:
        cells = spread.set_index("cell")
        states = [s for s in orders["prefix_state"] if s in cells.index]
        mean = [float(cells.loc[s, "mean"]) for s in states]
        std = [float(cells.loc[s, "std"]) for s in states]
        xs = [x[list(orders["prefix_state"]).index(s)] + 0.12 for s in states]
        ax.errorbar(xs, mean, yerr=std, fmt="D", color="tab:green", ms=3, capsize=3,
                    label=f"prefix, mean ± std over {int(cells['n'].max())} seeds", zorder=3)
        data["prefix_seeds"] = {"states": states, "mean": mean, "std": std}
    _hlines(ax, data["refs"])
    ax.set_xticks(x)
    ax.set_xticklabels([f"{k}\n{p}\n{s}" for k, p, s in zip(x, orders["prefix_state"], orders["suffix_state"])],
                       fontsize=7)
    _finish(fig, ax, out, "teacher blocks loaded (prefix state / suffix state)",
            f"{arch}: accuracy along the loading orders")
    return data


def training_curves(curves: dict, epochs_before: dict, out: Path) -> dict:
    """Validation score per epoch against *cumulative* epochs: KD and PWL continue from the scratch student's
    last epoch where they start from its weights (`epochs_before`), so no curve looks like it won at equal
    training. The score is validation accuracy, for PWL its selection score (mean over the prefix states)."""
    fig, axes = plt.subplots(1, len(curves), figsize=(4.6 * len(curves), 3.4), squeeze=False)
    names = {"teacher": "teacher", "student": "scratch student", "kd": "KD student",
             "pwl": "PWL (selection score)"}
    data = {}
    for ax, (arch, roles) in zip(axes[0], curves.items()):
        data[arch] = {}
        for role, df in roles.items():
            x = [int(s) + 1 + epochs_before[arch].get(role, 0) for s in df["step"]]
            y = [100 * float(v) for v in df["score"]]
            ax.plot(x, y, "o-", ms=3, label=names.get(role, role))
            data[arch][role] = {"epoch": x, "score": y}
        ax.set_title(arch)
        ax.set_xlabel("cumulative training epochs of the model")
        ax.set_ylabel("validation score (%)")
        ax.grid(alpha=0.3)
    axes[0][-1].legend(**LEGEND)
    fig.tight_layout()
    _save(fig, out)
    return data


STRATEGY_STYLES = {"teacher_only": ("k", "-", 2.2), "student_only": ("tab:red", "-", 1.2),
                   "pwl_prefix": ("tab:blue", "-", 1.4), "pwl_value": ("tab:orange", "--", 1.4),
                   "pwl_parallel": ("tab:green", ":", 1.6)}


def loadsim_curves(arch: str, curves: dict, row, out: Path) -> dict:
    """Accuracy of the answers against time since launch (log axis), one panel per device profile (file
    transport; the HTTP runs are in the table). Before its first answer a strategy serves nothing (accuracy 0):
    that stretch is drawn along the bottom edge, so the jump at the first answer shows. Reference lines: PWL all-S
    and all-T (the teacher's accuracy)."""
    cols = min(2, len(curves))
    rows = -(-len(curves) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.4 * cols, 3.4 * rows), squeeze=False)
    lo_acc = min(float(row.pwl_all_S), *(df.loc[df["accuracy"] > 0, "accuracy"].min() for df in curves.values()))
    bottom, top = lo_acc - 3.0, float(row.pwl_all_T) + 1.5
    data = {}
    for ax, (dev, df) in zip(axes.flat, curves.items()):
        data[dev] = {}
        t0 = 0.5 * 1e3 * df["t"].min()  # the axis starts before the first answer of any strategy
        for name, part in df.groupby("strategy", sort=False):
            if name.endswith("_http"):
                continue
            color, ls, lw = STRATEGY_STYLES.get(name, ("tab:gray", "-", 1.0))
            t = [float(v) * 1e3 for v in part["t"]]
            acc = [float(v) for v in part["accuracy"]]
            ax.step([t0, t[0]] + t, [bottom, bottom] + acc, where="post", color=color, ls=ls, lw=lw, label=name)
            ax.plot([t[0]], [acc[0]], "o", color=color, ms=3)
            data[dev][name] = {"t_ms": t, "accuracy": acc}
        ax.axhline(float(row.pwl_all_T), color="k", lw=0.6, ls=":", label="all-T (teacher)", zorder=1)
        ax.axhline(float(row.pwl_all_S), color="tab:blue", lw=0.6, ls=":", label="PWL all-S", zorder=1)
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.set_xlim(left=t0)
        ax.set_ylim(bottom, top)
        ax.set_title(f"{arch} on {dev}")
        ax.set_xlabel("time since launch (ms, log scale)")
        ax.set_ylabel("test accuracy of the answer (%)")
        ax.grid(alpha=0.3, which="both")
    for ax in list(axes.flat)[len(curves):]:
        ax.set_visible(False)
    axes.flat[cols - 1].legend(**{**LEGEND, "title": "bottom edge = no answer yet", "title_fontsize": 6})
    fig.tight_layout()
    _save(fig, out)
    return data


def _two_five(v, _) -> str:
    """Minor tick labels of a log axis at 2x and 5x each power of ten only (the rest would collide)."""
    if v <= 0:
        return ""
    lead = v / 10 ** math.floor(math.log10(v) + 1e-9)
    return f"{v:g}" if round(lead) in (2, 5) and abs(lead - round(lead)) < 1e-6 else ""


LABEL_COLORS = {"student": "tab:red", "prefix": "tab:blue", "suffix": "tab:orange", "contiguous": "tab:green",
                "other": "tab:gray", "teacher": "k"}


def pareto(arch: str, states, front, out: Path) -> dict:
    """Test accuracy against weight bytes of every loading state (colour = label), the Pareto front as a step."""
    fig, ax = plt.subplots(figsize=(6.8, 4.0))
    for lab, part in states.groupby("label", sort=False):
        ax.scatter(part["bytes"] / 1e6, part["test_acc"], s=16, color=LABEL_COLORS.get(lab, "tab:purple"),
                   label=lab, alpha=0.8, zorder=3)
    ax.step(front["bytes"] / 1e6, front["test_acc"], where="post", color="k", lw=1, label="Pareto front", zorder=2)
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(FuncFormatter(_two_five))
    _finish(fig, ax, out, "weight bytes of the state (MB, log scale)",
            f"{arch}: accuracy against weight bytes, all {len(states)} states")
    return {"states": list(states["state"]), "mb": [float(v) / 1e6 for v in states["bytes"]],
            "test_acc": [float(v) for v in states["test_acc"]], "front": list(front["state"])}
