"""timm-style registry: family name -> (config schema, builder). A new family is one file + one line."""
from dataclasses import dataclass
from typing import Callable

from pydantic import BaseModel

from ..errors import PWLError


@dataclass(frozen=True)
class Family:
    name: str
    config: type[BaseModel]  # pydantic schema of the family's options
    build: Callable  # build(cfg, in_chans, num_classes, img_size) -> BlockNet
    pretrained: Callable | None = None  # pretrained(net, cfg) -> source description; loads weights in place


_FAMILIES: dict[str, Family] = {}


def register(name: str, config: type[BaseModel], pretrained: Callable | None = None):
    def deco(fn):
        _FAMILIES[name] = Family(name, config, fn, pretrained)
        return fn

    return deco


def families() -> list[str]:
    return sorted(_FAMILIES)


def get_family(name: str) -> Family:
    if not isinstance(name, str) or name not in _FAMILIES:  # a list or dict here is a typo, not a crash
        raise PWLError(f"unknown architecture family {name!r}", f"use one of: {', '.join(families())}")
    return _FAMILIES[name]


def parse_model_config(raw: dict) -> BaseModel:
    """Validate a raw `{family: ..., ...}` dict with its family's schema."""
    if not isinstance(raw, dict) or "family" not in raw:
        raise PWLError(f"model config {raw!r} has no 'family'", f"add family: one of {', '.join(families())}")
    return get_family(raw["family"]).config.model_validate(raw)


def build_model(cfg: BaseModel, in_chans: int, num_classes: int, img_size: int):
    """The family's builder, after its `check_input` hook (the params schema ran it on data.image_size; the
    prepared data's size is checked again here, a PWLError rather than a builder's traceback)."""
    try:
        cfg.check_input(img_size)
    except ValueError as e:
        raise PWLError(f"{cfg.family}: {e}", "set data.image_size to a size the model takes, "
                                             "then rerun `dvc repro` (prepare runs again)") from None
    return get_family(cfg.family).build(cfg, in_chans=in_chans, num_classes=num_classes, img_size=img_size)


def names_pretrained(cfg: BaseModel) -> bool:
    """Does the model config name pretrained weights (`pretrained` / `pretrained_file`)?"""
    return bool(getattr(cfg, "pretrained", None) or getattr(cfg, "pretrained_file", None))


def init_pretrained(net, cfg: BaseModel) -> str | None:
    """Load the pretrained weights a model config names, if any; returns where they came from. Only the
    training stages call this: later stages load the trained weights."""
    if not names_pretrained(cfg):
        return None
    family = get_family(cfg.family)
    if family.pretrained is None:
        raise PWLError(f"family {cfg.family!r} has no pretrained weights loader", "remove pretrained from its config")
    return family.pretrained(net, cfg)
