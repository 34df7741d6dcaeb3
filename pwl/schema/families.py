"""The model families' options, one schema per family, and the registry of family names: what params name
under `arch.<arch>.teacher/student`. pwl/models builds each family from its schema (one builder per name here)."""
from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ..errors import PWLError

# every integer of a model config (widths, depths, dims, heads, patch sizes, strides...) is a size or a count:
# at least 1 (0 divides by zero or builds nothing), at most this (beyond any real model; a typo must not exhaust
# memory while building)
MAX_SIZE = 2 ** 14


class FamilyConfig(BaseModel):
    """Base schema: unknown keys are errors; `widths`/`depths` give one entry per block."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)  # no inf/nan ratios

    @field_validator("*")
    @classmethod
    def _sizes(cls, v, info):
        ints = v if isinstance(v, tuple) else (v,)
        if ints and all(isinstance(i, int) and not isinstance(i, bool) for i in ints) \
                and not 1 <= min(ints) <= max(ints) <= MAX_SIZE:
            raise ValueError(f"{info.field_name} {list(v) if isinstance(v, tuple) else v}: sizes and counts "
                             f"must be integers from 1 to {MAX_SIZE}")
        return v

    @model_validator(mode="after")
    def _same_length(self):
        w, d = getattr(self, "widths", None), getattr(self, "depths", None)
        if w is not None and d is not None and len(w) != len(d):
            raise ValueError(f"widths has {len(w)} entries but depths has {len(d)}: give one of each per block")
        if d is not None and (len(d) == 0 or min(d) < 1):
            raise ValueError(f"depths {list(d)} must be a non-empty list of positive integers")
        if w is not None and min(w) < 1:
            raise ValueError(f"widths {list(w)} must be positive")
        return self

    @property
    def num_blocks(self) -> int:
        return len(self.depths)

    def block_widths(self) -> list[int]:
        return list(self.widths)

    # Family-specific rules, as hooks: the params schema calls them, so a model that cannot be built stops every
    # stage with a one-line message (exit 2) before any work, and pwl/config.py names no family.

    def check_input(self, image_size: int) -> None:
        """Raise ValueError if this model cannot take `image_size` x `image_size` images."""

    def check_student(self, student: "FamilyConfig") -> None:
        """Raise ValueError if `student` cannot swap blocks with this teacher for a reason other than widths
        (pwl.schema.objective.check_pairing checks those for every family)."""


class VGGConfig(FamilyConfig):
    family: Literal["vgg"] = "vgg"
    widths: tuple[int, ...] = (64, 128, 256, 512, 512)
    depths: tuple[int, ...] = (2, 2, 3, 3, 3)  # VGG-16 layout; the published student uses 1 per stage

    def check_input(self, image_size: int) -> None:
        if image_size % 2 ** self.num_blocks:
            raise ValueError(f"image_size {image_size} is not divisible by 2^{self.num_blocks} "
                             "(VGG max-pools once per block)")


class ResNetConfig(FamilyConfig):
    family: Literal["resnet"] = "resnet"
    stem_width: int = 64
    widths: tuple[int, ...] = (32, 64, 128, 256)
    depths: tuple[int, ...] = (3, 4, 6, 3)  # ResNet-34 layout; the published student uses 1 per stage


class MobileNetConfig(FamilyConfig):
    family: Literal["mobilenet"] = "mobilenet"
    stem_width: int = 32
    # MobileNetV2's stages (channels, repeats, first stride), stride 1 where CIFAR-size inputs need it (stem, stage 2)
    widths: tuple[int, ...] = (16, 24, 32, 64, 96, 160, 320)
    depths: tuple[int, ...] = (1, 2, 3, 4, 3, 3, 1)
    strides: tuple[int, ...] = (1, 1, 2, 2, 1, 2, 1)
    expand_ratio: int = Field(6, ge=1)  # hidden width of an inverted residual = expand_ratio x its input width
    head_width: int = Field(1280, ge=1)  # the 1x1 conv before pooling

    @model_validator(mode="after")
    def _strides(self):
        if len(self.strides) != len(self.depths) or any(s not in (1, 2) for s in self.strides):
            raise ValueError(f"strides {list(self.strides)} must give 1 or 2 for each of the {len(self.depths)} "
                             "blocks")
        return self

    def check_input(self, image_size: int) -> None:
        down = 2 ** self.strides.count(2)
        if image_size % down:
            raise ValueError(f"image_size {image_size} is not divisible by {down} (the product of strides)")

    def check_student(self, student: "MobileNetConfig") -> None:
        if student.strides != self.strides:  # features must meet the converters at the same resolution
            raise ValueError(f"mobilenet teacher and student need the same strides ({list(self.strides)} vs "
                             f"{list(student.strides)})")


class ViTConfig(FamilyConfig):
    family: Literal["vit"] = "vit"
    patch_size: int = 16
    dim: int = 192
    heads: int = 3
    mlp_ratio: float = Field(4.0, gt=0, le=64)
    depths: tuple[int, ...] = (2, 2, 2, 2, 2, 2)  # transformer layers per PWL block (ViT-Tiny teacher)
    drop_path: float = Field(0.0, ge=0, lt=1)  # a probability
    input_size: Optional[int] = None  # images are resized to this inside the model (paper: 224); None = as stored
    pretrained: Optional[str] = None  # timm model name to start from, e.g. vit_tiny_patch16_224.augreg_in21k_ft_in1k
    pretrained_file: Optional[str] = None  # local weights (.safetensors/.pth/.bin, timm layout); wins over pretrained
    # the LayerNorm before the head. false emulates the authors' code, which builds it but never applies it (a bug:
    # the classifier then reads the raw class token); the model then has no final norm at all
    final_norm: bool = True

    @model_validator(mode="after")
    def _dims(self):
        if self.dim % self.heads:
            raise ValueError(f"vit: dim {self.dim} is not divisible by heads {self.heads}")
        return self

    def check_input(self, image_size: int) -> None:
        size = self.input_size or image_size
        if size % self.patch_size:
            raise ValueError(f"input size {size} is not divisible by patch_size {self.patch_size}")

    def check_student(self, student: "ViTConfig") -> None:
        if student.patch_size != self.patch_size:
            raise ValueError("vit teacher and student need the same patch_size (the embedder is swapped with block 1)")
        if student.input_size != self.input_size:
            raise ValueError(f"vit teacher and student need the same input_size (teacher {self.input_size}, student "
                             f"{student.input_size}): their token streams are mixed block by block")

    def block_widths(self) -> list[int]:
        return [self.dim] * self.num_blocks


# The registry of family names: each schema under the name params give as `family:`. A new family is its
# schema here and its builder in pwl/models (registered under the same name; tests/test_models.py checks both).
CONFIGS: dict[str, type[FamilyConfig]] = {c.model_fields["family"].default: c
                                          for c in (VGGConfig, ResNetConfig, MobileNetConfig, ViTConfig)}


def families() -> list[str]:
    return sorted(CONFIGS)


def family_config(name: str) -> type[FamilyConfig]:
    if not isinstance(name, str) or name not in CONFIGS:  # a list or dict here is a typo, not a crash
        raise PWLError(f"unknown architecture family {name!r}", f"use one of: {', '.join(families())}")
    return CONFIGS[name]


def parse_model_config(raw: dict) -> FamilyConfig:
    """Validate a raw `{family: ..., ...}` dict with its family's schema."""
    if not isinstance(raw, dict) or "family" not in raw:
        raise PWLError(f"model config {raw!r} has no 'family'", f"add family: one of {', '.join(families())}")
    return family_config(raw["family"]).model_validate(raw)


def names_pretrained(cfg: BaseModel) -> bool:
    """Does the model config name pretrained weights (`pretrained` / `pretrained_file`)?"""
    return bool(getattr(cfg, "pretrained", None) or getattr(cfg, "pretrained_file", None))
