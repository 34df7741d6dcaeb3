"""Shared tiny fixtures: every model here has a few hundred to a few thousand parameters, so the suite stays fast."""
import copy

import pytest
import torch

from pwl.build import freeze
from pwl.config import ArchConfig
from pwl.mixing import Converters, MixedModel
from pwl.models import build_model, families, parse_model_config

torch.set_num_threads(1)

IN_CHANS, NUM_CLASSES = 3, 5

# Teacher/student pairs that differ in width AND depth (students are narrower and shallower).
PAIRS = {
    "vgg": dict(img=8,
                teacher={"family": "vgg", "widths": [8, 12, 16], "depths": [2, 2, 2]},
                student={"family": "vgg", "widths": [4, 6, 8], "depths": [1, 1, 1]}),
    "resnet": dict(img=8,
                   teacher={"family": "resnet", "stem_width": 8, "widths": [8, 12, 16], "depths": [2, 2, 2]},
                   student={"family": "resnet", "stem_width": 4, "widths": [4, 6, 8], "depths": [1, 1, 1]}),
    "vit": dict(img=8,
                teacher={"family": "vit", "patch_size": 4, "dim": 16, "heads": 2, "mlp_ratio": 2.0,
                         "depths": [2, 2, 2]},
                student={"family": "vit", "patch_size": 4, "dim": 8, "heads": 2, "mlp_ratio": 2.0,
                         "depths": [1, 1, 1]}),
    "mobilenet": dict(img=8,
                      teacher={"family": "mobilenet", "stem_width": 8, "widths": [8, 12, 16], "depths": [2, 2, 2],
                               "strides": [1, 2, 2], "expand_ratio": 2, "head_width": 16},
                      student={"family": "mobilenet", "stem_width": 4, "widths": [4, 6, 8], "depths": [1, 1, 1],
                               "strides": [1, 2, 2], "expand_ratio": 2, "head_width": 8}),
}
# Every registered family runs every family-parametrised test: registering one without a tiny pair here fails.
FAMILIES = tuple(families())
assert set(PAIRS) == set(FAMILIES), f"tests/conftest.py PAIRS needs a tiny teacher/student pair for {FAMILIES}"


def make_net(raw: dict, img: int, seed: int = 0):
    torch.manual_seed(seed)
    return build_model(parse_model_config(raw), in_chans=IN_CHANS, num_classes=NUM_CLASSES, img_size=img)


def make_mixed(family: str, seed: int = 0, same_width: bool = False, converter=None) -> MixedModel:
    """A tiny mixed model; `same_width` gives a depth-only student (identity converters); `converter`: a
    pwl.schema.converters.ConverterConfig (default linear)."""
    pair = PAIRS[family]
    student_raw = dict(pair["student"])
    if same_width:
        for k in ("widths", "dim", "stem_width", "heads"):
            if k in pair["teacher"]:
                student_raw[k] = pair["teacher"][k]
    teacher = make_net(pair["teacher"], pair["img"], seed)
    student = make_net(student_raw, pair["img"], seed + 1)
    torch.manual_seed(seed + 2)
    return MixedModel(teacher, student, Converters(teacher.block_widths, student.block_widths, converter))


def batch(family: str, n: int = 4, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    img = PAIRS[family]["img"]
    return (torch.randn(n, IN_CHANS, img, img, generator=g),
            torch.randint(0, NUM_CLASSES, (n,), generator=g))


@pytest.fixture(params=FAMILIES)
def family(request) -> str:
    return request.param


@pytest.fixture
def mixed(family) -> MixedModel:
    return make_mixed(family)


@pytest.fixture
def frozen_mixed(family) -> MixedModel:
    m = make_mixed(family)
    freeze(m.teacher)
    return m


@pytest.fixture
def xy(family):
    return batch(family)


def arch_config(family: str, converter: dict | None = None) -> ArchConfig:
    pair = PAIRS[family]
    distill = {"optim": {}, **({"converter": converter} if converter is not None else {})}
    return ArchConfig.model_validate({"teacher": pair["teacher"], "student": pair["student"],
                                      "train_teacher": {}, "train_student": {}, "distill": distill, "kd": {"optim": {}}})


def clone(module):
    return copy.deepcopy(module)
