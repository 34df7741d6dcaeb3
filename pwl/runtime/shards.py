"""Export a trained PWL model as files a device streams in loading order, and read them back verified.

Layout of a shard directory (format `pwl-shards/2`: /1 had no pack):
  student.safetensors            the whole student (keys of `BlockNet.state_dict()`).
  converters.safetensors         every E_i/D_i (keys of `Converters.state_dict()`). Equal widths make
                                 converters identities: no tensors.
  teacher_block_{i}.safetensors  teacher block i (1-based, keys `blocks.{i-1}.*`); block 1 also holds the
                                 teacher's `embed.*`, block N its `head.*` (each belongs to that block's owner).
  model.safetensors              the pack: everything above in one file, laid out in the order a device needs
                                 it, with the configs in its header (pwl.runtime.pack). The runtime reads only
                                 this file, by byte ranges; the per-part files serve checks and budgets.
  manifest.json                  for every file its tensor names, bytes and sha256; the configs needed to
                                 rebuild the skeletons; named loading orders (prefix, suffix, best_val and
                                 value_<device> per device profile); optionally `val_accuracy` (state ->
                                 validation accuracy) and `value_orders` (what each value order assumed).
                                 Written last.
Every file is written to a temporary name and renamed, so a kill never leaves a truncated shard.
"""
import hashlib
import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load, save as st_save

from ..atomic import atomic_write as _atomic_write
from ..errors import PWLError
from ..manifests import check_shard_manifest
from ..mixing import MixedModel
from ..states import is_order
from .pack import PACK_FILE, block_parts, write_pack

FORMAT = "pwl-shards/2"
MANIFEST = "manifest.json"
STUDENT_FILE = "student.safetensors"
CONVERTERS_FILE = "converters.safetensors"


def teacher_file(block: int) -> str:
    """Shard of teacher block `block` (1-based)."""
    return f"teacher_block_{block}.safetensors"


def model_configs(teacher_cfg, student_cfg, in_chans: int, num_classes: int, img_size: int) -> dict:
    """The `configs` dict the default skeleton factory needs (model configs as plain JSON)."""
    dump = lambda c: c.model_dump(mode="json") if hasattr(c, "model_dump") else dict(c)  # noqa: E731
    return {"teacher": dump(teacher_cfg), "student": dump(student_cfg),
            "in_chans": in_chans, "num_classes": num_classes, "img_size": img_size}


def teacher_block_state(teacher, block: int) -> dict[str, torch.Tensor]:
    """Tensors of teacher block `block` (1-based), with the embedder for block 1 and the head for block N."""
    n = teacher.num_blocks
    state = {k: v for k, v in teacher.state_dict().items()
             if k.startswith(f"blocks.{block - 1}.")
             or (block == 1 and k.startswith("embed.")) or (block == n and k.startswith("head."))}
    return state


def export_shards(mixed: MixedModel, out_dir: Path, configs: dict, orders: dict[str, list[str]],
                  extra: dict | None = None) -> dict:
    """Write the shard directory for `mixed`; returns the manifest. `orders`: name -> list of states.
    `extra`: optional manifest fields, e.g. `val_accuracy` (state -> validation accuracy, which the runtime
    uses to pick the best state when a shard fails) and `value_orders` (device -> the profile and modelled
    block seconds behind the order `orders["value_<device>"]`)."""
    out_dir, n = Path(out_dir), mixed.num_blocks
    for name, order in orders.items():
        if not is_order(list(order)) or any(len(s) != n for s in order):
            raise PWLError(f"loading order {name!r} = {list(order)} is not a valid order over {n} blocks",
                           f"go from {'S' * n} to {'T' * n}, adding exactly one teacher block per step")
    out_dir.mkdir(parents=True, exist_ok=True)
    parts = {STUDENT_FILE: ("student", None, mixed.student.state_dict()),
             CONVERTERS_FILE: ("converters", None, mixed.converters.state_dict())}
    for i in range(1, n + 1):
        parts[teacher_file(i)] = ("teacher", i, teacher_block_state(mixed.teacher, i))
    files = {name: {"role": role, "block": block, **_write(out_dir / name, state)}
             for name, (role, block, state) in parts.items()}
    for stale in out_dir.glob("teacher_block_*.safetensors"):
        if stale.name not in files:
            stale.unlink()
    extra = extra or {}
    meta = {"num_blocks": n, "configs": configs,
            **({"val_accuracy": extra["val_accuracy"]} if "val_accuracy" in extra else {})}
    pack = write_pack(out_dir / PACK_FILE, pack_parts(mixed), meta)
    manifest = {"format": FORMAT, "num_blocks": n, "configs": configs,
                "orders": {k: list(v) for k, v in orders.items()}, "files": files,
                "pack": {"file": PACK_FILE, "header_bytes": pack["header_bytes"],
                         "parts": {k: v["end"] - v["start"] for k, v in pack["parts"].items()}},
                **extra}
    _atomic_write(out_dir / MANIFEST, (json.dumps(manifest, indent=1) + "\n").encode())
    return manifest


def pack_parts(mixed: MixedModel) -> dict[str, dict[str, torch.Tensor]]:
    """The pack's parts in file order: the student, then per teacher block its converter in, the block, its
    converter out (keys prefixed `student.`, `teacher.`, `converters.`)."""
    n = mixed.num_blocks
    conv = mixed.converters.state_dict()
    parts = {"student": {f"student.{k}": v for k, v in mixed.student.state_dict().items()}}
    for i in range(1, n + 1):
        for part in block_parts(i, n):
            parts[part] = ({f"teacher.{k}": v for k, v in teacher_block_state(mixed.teacher, i).items()}
                           if part.startswith("teacher_") else
                           {f"converters.{k}": v for k, v in conv.items() if k.startswith(part + ".")})
    return parts


def _write(path: Path, state: dict) -> dict:
    tensors = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    blob = st_save(tensors)
    _atomic_write(path, blob)
    return {"tensors": sorted(tensors), "bytes": len(blob), "sha256": hashlib.sha256(blob).hexdigest()}


def read_manifest(shard_dir: Path, orders: tuple[str, ...] = ()) -> dict:
    """The manifest, validated by its schema (pwl.manifests) and holding the loading `orders` named."""
    path = Path(shard_dir) / MANIFEST
    if not path.exists():
        raise PWLError(f"shard manifest {path} is missing", "export the model with pwl.runtime.export_shards")
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, OSError, RecursionError) as e:
        raise PWLError(f"shard manifest {path} is corrupt ({e})", "export the shards again") from None
    return check_shard_manifest(manifest, path, orders)


def load_shard(shard_dir: Path, manifest: dict, name: str, reader=None) -> dict[str, torch.Tensor]:
    """Read one file (through `reader`, e.g. a ThrottledReader), verify size and sha256, deserialize.

    A missing, truncated or corrupt file raises PWLError naming the file and what is wrong with it.
    """
    path = Path(shard_dir) / name
    entry = manifest["files"].get(name)
    fix = "export the shards again (pwl.runtime.export_shards) or restore the file"
    if entry is None:
        raise PWLError(f"{name} is not listed in {Path(shard_dir) / MANIFEST}", fix)
    if not path.exists():
        raise PWLError(f"shard {path} is missing", fix)
    size = path.stat().st_size
    if size != entry["bytes"]:
        what = "truncated" if size < entry["bytes"] else "longer than recorded"
        raise PWLError(f"shard {path} is {what}: {size} bytes on disk, manifest says {entry['bytes']}", fix)
    blob = reader.read(path) if reader is not None else path.read_bytes()
    digest = hashlib.sha256(blob).hexdigest()
    if len(blob) != entry["bytes"] or digest != entry["sha256"]:
        raise PWLError(f"shard {path} is corrupt: sha256 {digest[:16]}... of {len(blob)} bytes does not match "
                       f"the manifest's {entry['sha256'][:16]}...", fix)
    try:
        tensors = st_load(blob)
    except (SafetensorError, ValueError, RuntimeError) as e:
        raise PWLError(f"shard {path} cannot be deserialized ({e})", fix) from None
    if sorted(tensors) != entry["tensors"]:
        raise PWLError(f"shard {path} holds tensors {sorted(tensors)[:4]}... but the manifest lists "
                       f"{entry['tensors'][:4]}...", fix)
    return tensors
