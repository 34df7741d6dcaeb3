"""Figures (PNG) for the report; every number drawn comes from a pipeline file via report.tables."""
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def loading_orders(orders, teacher_acc: float, scratch_acc: float, arch: str, out: Path) -> None:
    """Test accuracy against teacher blocks loaded: both orders (left) and the prefix order close up (right),
    with the teacher and the scratch student as reference lines."""
    fig, (ax, zoom) = plt.subplots(1, 2, figsize=(10, 3.8))
    for a in (ax, zoom):
        a.plot(orders["teacher_blocks"], orders["prefix_test_acc"], "o-", label="prefix (input side first)")
        a.axhline(teacher_acc, color="k", lw=0.8, label=f"teacher {teacher_acc:.2f}")
        a.axhline(scratch_acc, color="tab:red", lw=0.8, ls=":", label=f"scratch student {scratch_acc:.2f}")
        a.set_xlabel("teacher blocks loaded")
        a.set_ylabel("test accuracy (%)")
        a.set_xticks(orders["teacher_blocks"])
        a.grid(alpha=0.3)
    ax.plot(orders["teacher_blocks"], orders["suffix_test_acc"], "s--", label="suffix (output side first)")
    for _, r in orders.iterrows():
        zoom.annotate(r["prefix_state"], (r["teacher_blocks"], r["prefix_test_acc"]), textcoords="offset points",
                      xytext=(0, 6), ha="center", fontsize=7)
    lo = min(orders["prefix_test_acc"].min(), scratch_acc)
    zoom.set_ylim(lo - 1, max(orders["prefix_test_acc"].max(), teacher_acc) + 1)
    ax.set_title(f"{arch}: accuracy along loading orders")
    zoom.set_title(f"{arch}: prefix order, close up")
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def training_curves(curves: dict, out: Path) -> None:
    """Validation score per epoch; curves = {arch: {role: DataFrame(step, score)}}."""
    fig, axes = plt.subplots(1, len(curves), figsize=(4.2 * len(curves), 3.4), squeeze=False)
    for ax, (arch, roles) in zip(axes[0], curves.items()):
        for role, df in roles.items():
            ax.plot(df["step"] + 1, 100 * df["score"], "o-", label=role)
        ax.set_title(arch)
        ax.set_xlabel("epoch")
        ax.set_ylabel("validation score (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def loadsim_curves(arch: str, curves: dict, teacher_acc: float, out: Path) -> None:
    """Accuracy of the answers against time since launch, one panel per device profile (file transport; the
    HTTP runs are in the table)."""
    styles = {"teacher_only": "-", "student_only": "-", "pwl_prefix": "-", "pwl_value": "--", "pwl_parallel": ":"}
    cols = min(2, len(curves))
    rows = -(-len(curves) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 3.4 * rows), squeeze=False)
    for ax, (dev, df) in zip(axes.flat, curves.items()):
        for name, part in df.groupby("strategy", sort=False):
            if name.endswith("_http"):
                continue
            ax.step(1e3 * part["t"], part["accuracy"], where="post", ls=styles.get(name, "-"), label=name)
        ax.axhline(teacher_acc, color="k", lw=0.6, ls=":")
        ax.set_title(f"{arch} on {dev}")
        ax.set_xlabel("time since launch (ms)")
        ax.set_ylabel("test accuracy of the answer (%)")
        ax.set_ylim(bottom=max(0.0, min(df.loc[df["accuracy"] > 0, "accuracy"].min() - 5, teacher_acc - 10)),
                    top=teacher_acc + 2)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    for ax in list(axes.flat)[len(curves):]:
        ax.set_visible(False)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


LABEL_COLORS = {"student": "tab:red", "prefix": "tab:blue", "suffix": "tab:orange", "contiguous": "tab:green",
                "other": "tab:gray", "teacher": "k"}


def pareto(arch: str, states, front, out: Path) -> None:
    """Test accuracy against weight bytes of every loading state (colour = label), the Pareto front as a step."""
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for lab, part in states.groupby("label", sort=False):
        ax.scatter(part["bytes"] / 1e6, part["test_acc"], s=16, color=LABEL_COLORS.get(lab, "tab:purple"),
                   label=lab, alpha=0.8)
    ax.step(front["bytes"] / 1e6, front["test_acc"], where="post", color="k", lw=1, label="Pareto front")
    for _, r in front.iterrows():
        ax.annotate(r["state"], (r["bytes"] / 1e6, r["test_acc"]), textcoords="offset points", xytext=(3, -9),
                    fontsize=6)
    ax.set_xscale("log")
    ax.set_xlabel("weight bytes of the state (MB, log scale)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"{arch}: accuracy against weight bytes, all {len(states)} states")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
