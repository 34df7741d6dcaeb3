"""The converter kinds params may name (`arch.<arch>.distill.converter`), and which families each fits: torch-free,
so that params validate before any model code loads. pwl/mixing.py registers one module class per name here."""
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

# name -> (what it is, the families whose features it fits; None = every family)
CONVERTER_KINDS = {
    "linear": ("a linear map over channels (1x1 conv / token linear): the published converter", None),
    "conv3x3": ("linear map + a zero-initialised residual bottleneck (3x3 conv, ReLU, 1x1 conv) over space",
                ("vgg", "resnet", "mobilenet")),
    "mlp": ("linear map + a zero-initialised residual MLP over each token (LayerNorm, linear, GELU, linear)",
            ("vit",)),
    "lowrank": ("linear map + a zero-initialised rank-`rank` update (SN-Netv2's low-rank stitching)", None),
}


class ConverterConfig(BaseModel):
    """How every converter of a model is built. `hidden_ratio`: the residual branch's width as a fraction of the
    converter's output width (conv3x3, mlp); `rank`: the low-rank update's rank (lowrank)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
    kind: Literal[tuple(CONVERTER_KINDS)] = "linear"
    hidden_ratio: float = Field(0.25, gt=0, le=16)
    rank: int = Field(4, ge=1, le=4096)


def check_converter_fits(kind: str, family: str) -> None:
    """Raise ValueError if converter `kind` cannot carry features of `family`."""
    fits = CONVERTER_KINDS[kind][1]
    if fits is not None and family not in fits:
        ok = [k for k, (_, f) in CONVERTER_KINDS.items() if f is None or family in f]
        raise ValueError(f"distill.converter.kind {kind} does not fit the {family} family (it fits "
                         f"{', '.join(fits)}): use one of {', '.join(ok)}")
