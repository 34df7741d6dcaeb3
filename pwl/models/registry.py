"""timm-style registry: family name -> builder (and pretrained-weights loader). The family's options schema
and its name live in pwl.schema.families (torch-free, for the params schema); a builder is registered under
that name."""
from dataclasses import dataclass
from typing import Callable

from ..errors import PWLError
from ..schema.families import CONFIGS, FamilyConfig, family_config, names_pretrained


@dataclass(frozen=True)
class Family:
    name: str
    config: type[FamilyConfig]  # pydantic schema of the family's options (pwl.schema.families)
    build: Callable  # build(cfg, in_chans, num_classes, img_size) -> BlockNet
    pretrained: Callable | None = None  # pretrained(net, cfg) -> source description; loads weights in place


_FAMILIES: dict[str, Family] = {}


def register(name: str, pretrained: Callable | None = None):
    """Register the decorated builder for the family `name` (a key of pwl.schema.families.CONFIGS)."""
    if name not in CONFIGS:
        raise KeyError(f"family {name!r} has no schema in pwl.schema.families.CONFIGS")

    def deco(fn):
        _FAMILIES[name] = Family(name, CONFIGS[name], fn, pretrained)
        return fn

    return deco


def builders() -> list[str]:
    """The families with a registered builder (every schema's: tests/test_models.py)."""
    return sorted(_FAMILIES)


def get_family(name: str) -> Family:
    family_config(name)  # an unknown name: the schema's error
    return _FAMILIES[name]


def build_model(cfg: FamilyConfig, in_chans: int, num_classes: int, img_size: int):
    """The family's builder, after its `check_input` hook (the params schema ran it on data.image_size; the
    prepared data's size is checked again here, a PWLError rather than a builder's traceback)."""
    try:
        cfg.check_input(img_size)
    except ValueError as e:
        raise PWLError(f"{cfg.family}: {e}", "set data.image_size to a size the model takes, "
                                             "then rerun `dvc repro` (prepare runs again)") from None
    return get_family(cfg.family).build(cfg, in_chans=in_chans, num_classes=num_classes, img_size=img_size)


def init_pretrained(net, cfg: FamilyConfig) -> str | None:
    """Load the pretrained weights a model config names, if any; returns where they came from. Only the
    training stages call this: later stages load the trained weights."""
    if not names_pretrained(cfg):
        return None
    family = get_family(cfg.family)
    if family.pretrained is None:
        raise PWLError(f"family {cfg.family!r} has no pretrained weights loader", "remove pretrained from its config")
    return family.pretrained(net, cfg)
