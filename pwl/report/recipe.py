"""The authors' code (5yearsKim/ProgressiveWeightLoading, trained through the Hugging Face Trainer) beside ours,
item by item. Their side is written here once, in our params' terms; ours is read from the params a run used,
so the report's table says, per item, whether this profile emulates theirs."""
from dataclasses import dataclass
from typing import Any, Callable


@dataclass(frozen=True)
class Item:
    name: str
    authors: Any  # what their code does, as the value our params would take to do the same
    where: str  # where their code does it
    ours: Callable  # (params, arch config) -> our value, or None where the item does not apply to the arch
    why: str  # why ours differs where it does (the default profile's reason, or why no param emulates it)
    show: Callable = str  # a value in words


def _clip(v) -> str:
    return " / ".join(f"{c:g}" if c else "off" for c in v)


def _finetune(v) -> str:
    optimizer, wd, no_decay, schedule, end = v
    spared = "biases and norms spared" if no_decay else "decay on every weight"
    return f"{optimizer}, wd {wd:g} ({spared}), {schedule} to {end:g}"


def _is_vit(a) -> bool:
    return a.teacher.family == "vit"


ITEMS = (
    Item("gradient clip, max norm (teacher / student / distillation)", (1.0, 1.0, 1.0),
         "HF Trainer default `max_grad_norm`, every run",
         lambda p, a: (a.train_teacher.clip_grad_norm, a.train_student.clip_grad_norm, a.distill.optim.clip_grad_norm),
         "the paper names no clip; ours caps only where training needs it (the CPU profile's distillation, a safety "
         "net for BN `eval` in mixed passes)", _clip),
    Item("student BatchNorm in mixed passes (`mixed_bn_stats`)", "update",
         "HF Trainer: every module in train mode", lambda p, a: a.distill.loss.mixed_bn_stats,
         "`eval` trains each mixed state as it is served, with running statistics; with batch statistics the "
         "converted features met other statistics at inference and the first prefix state dipped (README sweeps)"),
    Item("frozen teacher's BatchNorm while distilling (`teacher_bn`)", "train",
         "HF Trainer: `model.train()` on the whole distiller, teacher included", lambda p, a: a.distill.teacher_bn,
         "a frozen teacher should give an image the same target whatever batch it comes in, and its statistics "
         "should not drift (docs/method.md); all-T here is the trained teacher either way (pwl/teacher_bn.py)"),
    Item("distillation optimiser", "sgd", "`train_student.py` hard-codes SGD for every family",
         lambda p, a: a.distill.optim.optimizer,
         "AdamW for the ViT, as transformers are usually trained and as its teacher is fine-tuned"),
    Item("ViT teacher fine-tune (optimiser, weight decay, LR schedule)", ("adamw", 0.01, True, "linear", 0.0),
         "`finetune_teacher.py`: HF Trainer, `weight_decay=0.01`",
         lambda p, a: (a.train_teacher.optimizer, a.train_teacher.weight_decay, a.train_teacher.no_decay_norm_bias,
                       a.train_teacher.schedule, min(a.train_teacher.lr * a.train_teacher.min_lr_ratio,
                                                     a.train_teacher.min_lr)) if _is_vit(a) else None,
         "the published recipe's cosine schedule, as for every other training", _finetune),
    Item("augmentation order, rotation sampling", ("rotate-flip-crop", "nearest"),
         "torchvision RandomRotation(15) -> RandomHorizontalFlip -> RandomCrop(reflect)",
         lambda p, a: (p.augment.order, p.augment.rotate_interpolation),
         "the paper names the three ops, not their order nor the rotation's sampling", ", ".join),
    Item("ViT images resized before augmentation", True, "`Resize(224)` first; crop padding 224/8",
         lambda p, a: p.augment.at_input_size if getattr(a.teacher, "input_size", None) else None,
         "augmenting the stored 32x32 images costs 49x less memory and time; the model resizes after",
         lambda v: "yes" if v else "no"),
    Item("ViT final LayerNorm (teacher, student)", (False, False),
         "`block_vit.py` builds the last block's LayerNorm and never calls it, a bug",
         lambda p, a: (a.teacher.final_norm, a.student.final_norm) if _is_vit(a) else None,
         "a bug, not a choice: the pretrained ViT-Tiny was trained with its final norm, and without it the "
         "classifier reads un-normalised class tokens; emulating it would reproduce their numbers, not the method",
         lambda v: ", ".join("applied" if on else "skipped" for on in v)),
    Item("checkpoint selection", "test set", "HF Trainer `metric_for_best_model` on the test split",
         lambda p, a: "validation split", "picking on the test set inflates the test accuracy it reports; no "
         "param offers it"),
)


def _ours(shown: dict[str, str]) -> str:
    """One value when every arch has it, else `arch: value` for each; a dash when no arch has the item."""
    if len(set(shown.values())) <= 1:
        return next(iter(shown.values()), "-")
    return "; ".join(f"{arch}: {v}" for arch, v in shown.items())


def recipe_rows(params) -> list[dict]:
    """One row per item: their value, ours (read from `params`), whether this run emulates theirs, and why not."""
    rows = []
    for item in ITEMS:
        values = {arch: item.ours(params, params.arch[arch]) for arch in params.archs}
        values = {arch: v for arch, v in values.items() if v is not None}
        same = [arch for arch, v in values.items() if v == item.authors]
        emulated = ("n/a" if not values else "yes" if len(same) == len(values)
                    else f"partly ({', '.join(same)})" if same else "no")
        rows.append({"item": item.name, "authors": f"{item.show(item.authors)} ({item.where})",
                     "ours": _ours({arch: item.show(v) for arch, v in values.items()}),
                     "emulated": emulated, "why": "" if emulated in ("yes", "n/a") else item.why})
    return rows
