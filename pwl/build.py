"""Models from validated params and a prepared dataset's shape."""
from pathlib import Path

from torch import nn

from . import paths
from .checkpoints import load_weights
from .mixing import Converters, MixedModel
from .models import BlockNet, build_model, init_pretrained


def build(model_cfg, ds) -> BlockNet:
    return build_model(model_cfg, in_chans=ds.in_chans, num_classes=ds.num_classes, img_size=ds.image_size)


def build_mixed(arch_cfg, ds) -> MixedModel:
    teacher, student = build(arch_cfg.teacher, ds), build(arch_cfg.student, ds)
    return MixedModel(teacher, student, Converters(teacher.block_widths, student.block_widths))


def distilled_parts(mixed: MixedModel) -> nn.ModuleDict:
    """What distillation trains and saves: the student and the converters (the teacher stays frozen)."""
    return nn.ModuleDict({"student": mixed.student, "converters": mixed.converters})


def freeze(model: nn.Module) -> nn.Module:
    """Teacher during distillation: eval mode (BN statistics fixed) and no gradients."""
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def load_trained_mixed(arch: str, arch_cfg, ds, seed, pwl_file: Path | None = None) -> MixedModel:
    mixed = build_mixed(arch_cfg, ds)
    load_weights(paths.weights(arch, "teacher", seed), mixed.teacher)
    load_weights(pwl_file or paths.weights(arch, "pwl", seed), distilled_parts(mixed))
    return freeze(mixed)


def init_student(student: BlockNet, arch: str, arch_cfg, seed) -> None:
    """A distilled student's starting weights (`distill.init_student`): fresh, the scratch baseline's, or the
    pretrained weights its config names."""
    how = arch_cfg.distill.init_student
    if how == "scratch":
        load_weights(paths.weights(arch, "student", seed), student)
    elif how == "pretrained":
        init_pretrained(student, arch_cfg.student)
