"""Export a trained PWL model as the folder a device streams it from (models/<arch>/shards/):
  the pack            (pwl.runtime.pack.pack_path): every weight in one file, laid out in the order a device needs
                      it, with the configs, every part's byte range and sha256 and the validation accuracy of
                      every state in its header. The one export format: the runtime, pwl.budget and the tests
                      read it through pwl.runtime.pack.
  orders.json         the named loading orders the runtime may follow (prefix, suffix, best_val and
                      value_<device> per device of `loadsim.devices`) and what each value order assumed
                      (`value_orders`); format `pwl-orders/1`, checked by pwl.manifests.OrdersFile.
Both are written to a temporary name and renamed, so a kill never leaves a truncated file.
"""
import json
from pathlib import Path

import torch

from ..atomic import atomic_write
from ..errors import PWLError
from ..manifests import EXPORT_FIX, check_orders
from ..mixing import MixedModel
from ..states import is_order
from .pack import STUDENT_PART, PackIndex, block_parts, pack_index, pack_path, parse_part, write_pack

ORDERS_FILE = "orders.json"
ORDERS_FORMAT = "pwl-orders/1"
# what older exports wrote beside the pack (format pwl-shards/2): removed so that no stale copy is read
OLD_FILES = ("manifest.json", "student.safetensors", "converters.safetensors", "teacher_block_*.safetensors")


def model_configs(teacher_cfg, student_cfg, in_chans: int, num_classes: int, img_size: int) -> dict:
    """The `configs` the pack header carries: what the runtime builds its skeletons from (plain JSON)."""
    dump = lambda c: c.model_dump(mode="json") if hasattr(c, "model_dump") else dict(c)  # noqa: E731
    return {"teacher": dump(teacher_cfg), "student": dump(student_cfg),
            "in_chans": in_chans, "num_classes": num_classes, "img_size": img_size}


def teacher_block_state(teacher, block: int) -> dict[str, torch.Tensor]:
    """Tensors of teacher block `block` (1-based), with the embedder for block 1 and the head for block N."""
    n = teacher.num_blocks
    return {k: v for k, v in teacher.state_dict().items()
            if k.startswith(f"blocks.{block - 1}.")
            or (block == 1 and k.startswith("embed.")) or (block == n and k.startswith("head."))}


def pack_parts(mixed: MixedModel) -> dict[str, dict[str, torch.Tensor]]:
    """The pack's parts in file order: the student, then per teacher block its converter in, the block, its
    converter out (keys prefixed `student.`, `teacher.`, `converters.`)."""
    n = mixed.num_blocks
    conv = mixed.converters.state_dict()
    parts = {STUDENT_PART: {f"student.{k}": v for k, v in mixed.student.state_dict().items()}}
    for i in range(1, n + 1):
        for part in block_parts(i, n):
            parts[part] = ({f"teacher.{k}": v for k, v in teacher_block_state(mixed.teacher, i).items()}
                           if parse_part(part)[0] == "teacher" else
                           {f"converters.{k}": v for k, v in conv.items() if k.startswith(part + ".")})
    return parts


def export_pack(mixed: MixedModel, out_dir: Path, configs: dict, val_accuracy: dict | None = None) -> PackIndex:
    """Write the pack of `mixed` into `out_dir` (with `val_accuracy`, state -> validation accuracy, which the
    runtime uses to pick the best state when a part fails); returns its index, read back from disk."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for pattern in OLD_FILES:
        for stale in out_dir.glob(pattern):
            stale.unlink()
    meta = {"num_blocks": mixed.num_blocks, "configs": configs,
            "converter": mixed.converters.cfg.model_dump(mode="json"),  # the runtime builds this kind
            **({"val_accuracy": val_accuracy} if val_accuracy is not None else {})}
    write_pack(pack_path(out_dir), pack_parts(mixed), meta)
    return pack_index(out_dir)


def write_orders(out_dir: Path, num_blocks: int, orders: dict[str, list[str]],
                 value_orders: dict | None = None) -> dict:
    """Write the loading orders (name -> states from all-S to all-T) beside the pack; `value_orders`: device ->
    the profile and modelled block seconds behind `orders["value_<device>"]`. Returns what was written."""
    n = num_blocks
    for name, order in orders.items():
        if not is_order(list(order)) or any(len(s) != n for s in order):
            raise PWLError(f"loading order {name!r} = {list(order)} is not a valid order over {n} blocks",
                           f"go from {'S' * n} to {'T' * n}, adding exactly one teacher block per step")
    doc = {"format": ORDERS_FORMAT, "num_blocks": n, "orders": {k: list(v) for k, v in orders.items()},
           **({"value_orders": value_orders} if value_orders else {})}
    atomic_write(Path(out_dir) / ORDERS_FILE, (json.dumps(doc, indent=1) + "\n").encode())
    return doc


def read_orders(shard_dir: Path, names: tuple[str, ...] = ()) -> dict[str, list[str]]:
    """The loading orders of an export folder, checked (pwl.manifests) and holding the orders `names`."""
    path = Path(shard_dir) / ORDERS_FILE
    if not path.exists():
        raise PWLError(f"loading orders {path} are missing", EXPORT_FIX)
    try:
        raw = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, OSError, RecursionError) as e:
        raise PWLError(f"loading orders {path} are corrupt ({e})", EXPORT_FIX) from None
    return check_orders(raw, path, ORDERS_FORMAT, names)["orders"]
