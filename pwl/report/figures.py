"""Figures (PNG) for the report; every number drawn comes from a pipeline file via report.tables."""
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def loading_orders(orders, teacher_acc: float, scratch_acc: float, arch: str, out: Path) -> None:
    """Test accuracy against teacher blocks loaded, prefix and suffix orders, with reference lines."""
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    ax.plot(orders["teacher_blocks"], orders["prefix_test_acc"], "o-", label="prefix (input side first)")
    ax.plot(orders["teacher_blocks"], orders["suffix_test_acc"], "s--", label="suffix (output side first)")
    ax.axhline(teacher_acc, color="k", lw=0.8, label=f"teacher {teacher_acc:.2f}")
    ax.axhline(scratch_acc, color="tab:red", lw=0.8, ls=":", label=f"scratch student {scratch_acc:.2f}")
    for _, r in orders.iterrows():
        ax.annotate(r["prefix_state"], (r["teacher_blocks"], r["prefix_test_acc"]), textcoords="offset points",
                    xytext=(0, 6), ha="center", fontsize=7)
    ax.set_xlabel("teacher blocks loaded")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"{arch}: accuracy along loading orders")
    ax.set_xticks(orders["teacher_blocks"])
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(out, dpi=120)
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
    """Accuracy a request gets against time since launch, one panel per device profile."""
    fig, axes = plt.subplots(1, len(curves), figsize=(4.0 * len(curves), 3.3), squeeze=False)
    for ax, (dev, df) in zip(axes[0], curves.items()):
        for name, part in df.groupby("strategy", sort=False):
            ax.step(1e3 * part["t"], part["accuracy"], where="post", label=name)
        ax.axhline(teacher_acc, color="k", lw=0.6, ls=":")
        ax.set_title(f"{arch} on {dev}")
        ax.set_xlabel("time since launch (ms)")
        ax.set_ylabel("test accuracy of the answer (%)")
        ax.set_ylim(bottom=max(0.0, min(df.loc[df["accuracy"] > 0, "accuracy"].min() - 5, teacher_acc - 10)))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6, loc="lower right")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
