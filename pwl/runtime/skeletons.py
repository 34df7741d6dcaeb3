"""Modules from the pack's tensors: empty skeletons built on the meta device from the header's configs, filled
in place with the tensors of a part (no copy), and stand-ins for the parts not loaded yet."""
from typing import Callable

import torch
from torch import nn

from ..errors import PWLError
from ..manifests import EXPORT_FIX
from ..mixing import Converters
from ..models import BlockNet, build_model, parse_model_config
from ..schema.converters import ConverterConfig


class Missing(nn.Module):
    """Stands for a part not loaded yet; running it is a bug, so it fails loudly."""

    def forward(self, *args):
        raise RuntimeError("a part that is not loaded yet was run")

    def convert(self, f, boundary, src, dst):
        if src != dst:  # same owner on both sides needs no converter (all-S / all-T states)
            raise RuntimeError("converters are not loaded yet")
        return f


class ConverterSet:
    """A frozen view of the converters loaded so far (the others are Missing), used as MixedModel.converters."""

    def __init__(self, enc: list, dec: list):
        self.enc, self.dec = enc, dec

    convert = Converters.convert


def converter_config(meta: dict) -> ConverterConfig:
    """The converters' kind and sizes from a pack header's `meta` (packs written before kinds existed: linear)."""
    try:
        return ConverterConfig.model_validate(meta.get("converter", {}))
    except ValueError as e:
        raise PWLError(f"the pack's converter config {meta.get('converter')!r} is invalid ({e})", EXPORT_FIX) from None


def skeleton_factory(meta: dict) -> Callable[[str], BlockNet]:
    """`build(role)` -> an empty (meta-device) BlockNet skeleton from the `configs` of a pack header's `meta`."""
    cfg = meta["configs"]

    def build(role: str) -> BlockNet:
        with torch.device("meta"):  # builders never load weights: those come from the pack
            return build_model(parse_model_config(cfg[role]), in_chans=cfg["in_chans"], num_classes=cfg["num_classes"],
                               img_size=cfg["img_size"])
    return build


def fill(skeleton: nn.Module, state: dict) -> nn.Module:
    """Put the tensors of `state` into a meta-device `skeleton` in place (strict: the same names and shapes),
    without copying them; eval mode, no gradients. Why not `load_state_dict(assign=True)`: it walks every
    module through hooks and checks, most of a millisecond per student on the path to the first answer."""
    slots = {}
    for prefix, module in skeleton.named_modules():
        dot = f"{prefix}." if prefix else ""
        slots.update({dot + k: (module._parameters, k) for k, v in module._parameters.items() if v is not None})
        slots.update({dot + k: (module._buffers, k) for k, v in module._buffers.items()
                      if v is not None and k not in module._non_persistent_buffers_set})
    bad = sorted(set(slots) ^ set(state)) + [k for k, (d, n) in slots.items() if k in state and d[n].shape != state[k].shape]
    if bad:
        raise PWLError(f"pack tensors do not fit the model skeleton: {bad[:4]} missing, unexpected or of another shape",
                       "the header's configs differ from the exported model: " + EXPORT_FIX)
    for key, (store, name) in slots.items():
        t = state[key]
        store[name] = nn.Parameter(t, requires_grad=False) if isinstance(store[name], nn.Parameter) else t
    if any(t.is_meta for t in (*skeleton.parameters(), *skeleton.buffers())):
        raise PWLError("the skeleton has tensors that no part provides (non-persistent buffers?)",
                       "pass a `factory` that builds skeletons on the CPU")
    return skeleton.eval()


def sub_state(tensors: dict, prefix: str) -> dict:
    """The tensors under `prefix`, with it removed from their keys."""
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
