"""One model from validated params and a prepared dataset's shape (the teacher and student together,
with converters: pwl.mixing)."""
from torch import nn

from . import paths
from .checkpoints import load_weights
from .models import BlockNet, build_model, init_pretrained


def build(model_cfg, ds) -> BlockNet:
    return build_model(model_cfg, in_chans=ds.in_chans, num_classes=ds.num_classes, img_size=ds.image_size)


def freeze(model: nn.Module) -> nn.Module:
    """Teacher during distillation: eval mode (BN statistics fixed) and no gradients."""
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def init_student(student: BlockNet, how: str, arch: str, arch_cfg, seed) -> None:
    """A distilled student's starting weights (`how`: `distill.init_student` or `kd.init_student`): fresh
    ("random"), the scratch baseline's ("scratch"), or the pretrained weights its config names ("pretrained")."""
    if how == "scratch":
        load_weights(paths.weights(arch, "student", seed), student)
    elif how == "pretrained":
        init_pretrained(student, arch_cfg.student)
