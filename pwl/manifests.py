"""Schemas of the two JSON files later stages trust: the prepared-data manifest (`data/prepared/manifest.json`)
and the loading orders of an export (`models/<arch>/shards/orders.json`; the weights and their checksums are in
the pack's header, checked by pwl.runtime.pack).

Why: both are plain JSON a user can truncate or edit, and every field feeds an index, a shape or a loop. A
missing key or a wrong type used to surface as a KeyError or a RuntimeError deep inside a model; checked here,
every problem is one PWLError that names the file, the field and the stage that rewrites it."""
import json
import re
from pathlib import Path
from typing import Annotated, Optional

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, field_validator, model_validator

from .errors import PWLError
from .states import STUDENT, TEACHER, is_order

Sha256 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
Count = Annotated[int, Field(ge=0, le=2 ** 40)]
Positive = Annotated[int, Field(ge=1, le=2 ** 20)]
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]


def _bare_name(name: str) -> str:
    """A file name inside the manifest's own folder: no directories, nothing hidden (no `../` escapes)."""
    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", name):
        raise ValueError(f"file name {name!r} is not a plain file name in the manifest's folder")
    return name


class _Strict(BaseModel):
    """Strict types: the dict is used as read, so a count written as "3" or true must not pass as 3 or 1."""
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


# ------------------------------------------------------------------ prepared data (written by pwl.data.prepare)

class SplitEntry(_Strict):
    file: str
    count: Count
    sha256: Sha256
    class_counts: list[Count]

    _file = field_validator("file")(_bare_name)

    @model_validator(mode="after")
    def _sum(self):
        if sum(self.class_counts) != self.count:
            raise ValueError(f"class_counts add up to {sum(self.class_counts)}, count is {self.count}")
        return self


class PreparedSplits(_Strict):
    train: SplitEntry
    val: SplitEntry
    test: SplitEntry


class PreparedManifest(_Strict):
    dataset: str
    source: str
    classes: list[str] = Field(min_length=1)
    num_classes: Positive
    shape: list[Positive] = Field(min_length=3, max_length=3)  # C, H, W of the stored uint8 images
    mean: list[FiniteFloat]
    std: list[Annotated[float, Field(ge=0, allow_inf_nan=False)]]
    split_seed: Annotated[int, Field(ge=0, le=2 ** 32 - 1)]
    train_indices_sha256: Sha256
    val_indices_sha256: Sha256
    splits: PreparedSplits

    @model_validator(mode="after")
    def _consistent(self):
        c, h, w = self.shape
        if h != w:
            raise ValueError(f"shape {list(self.shape)}: images are stored square (H == W)")
        if self.num_classes != len(self.classes):
            raise ValueError(f"num_classes is {self.num_classes} but {len(self.classes)} classes are listed")
        if len(self.mean) != c or len(self.std) != c:
            raise ValueError(f"mean and std need one value per channel ({c}), not {len(self.mean)} and {len(self.std)}")
        for name in ("train", "val", "test"):
            if len(getattr(self.splits, name).class_counts) != self.num_classes:
                raise ValueError(f"splits.{name}.class_counts needs one count per class ({self.num_classes})")
        return self


# ------------------------------------------------------------------ loading orders (pwl.runtime.export)

class OrdersFile(_Strict):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)
    format: str
    num_blocks: Annotated[int, Field(ge=1, le=64)]
    orders: dict[str, list[str]] = Field(min_length=1)
    value_orders: Optional[dict[str, dict]] = None  # device -> what its value order assumed (kept as written)

    @model_validator(mode="after")
    def _consistent(self):
        n = self.num_blocks
        for name, order in self.orders.items():
            bad = [s for s in order if len(s) != n or set(s) - {STUDENT, TEACHER}]
            if bad:
                raise ValueError(f"orders.{name}: states {bad[:3]} are not {n} letters S/T (num_blocks is {n})")
            if not is_order(order):
                raise ValueError(f"orders.{name} {order} does not add the teacher blocks 1..{n} one per step "
                                 f"(a permutation), from {STUDENT * n} to {TEACHER * n}")
        return self


# ------------------------------------------------------------------ reading

def _errors(err: ValidationError, limit: int = 4) -> str:
    parts = []
    for e in err.errors()[:limit]:
        where = ".".join(str(p) for p in e["loc"]) or "(top level)"
        parts.append(f"{where}: {e['msg'].removeprefix('Value error, ')}")
    more = len(err.errors()) - limit
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


def read_json(path: Path, what: str, fix: str):
    """The parsed JSON at `path`; a missing, unreadable, truncated or non-JSON file is a PWLError naming it."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise PWLError(f"{what} {path} is missing", fix) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise PWLError(f"{what} {path} is unreadable or corrupt ({type(e).__name__}: {e})", fix) from None


def check(schema: type[BaseModel], raw, path: Path, what: str, fix: str) -> BaseModel:
    try:
        return schema.model_validate(raw)
    except ValidationError as e:
        raise PWLError(f"{what} {path} is invalid: {_errors(e)}", fix) from None


PREPARED_FIX = "run `dvc repro -f prepare` to write data/prepared again"
# the one fix for anything wrong with an export (the pack, its orders): pwl.runtime and pwl.budget say it too
EXPORT_FIX = "export the model again (`dvc repro -f export@<arch>`)"


def read_prepared_manifest(path: Path) -> dict:
    """The prepared-data manifest, validated; returned as the plain dict it was (fingerprints hash it)."""
    raw = read_json(path, "prepared-data manifest", PREPARED_FIX)
    check(PreparedManifest, raw, path, "prepared-data manifest", PREPARED_FIX)
    return raw


def check_orders(raw, path: Path, fmt: str, names: tuple[str, ...] = ()) -> dict:
    """Parsed loading orders, checked (format `fmt`, and holding the orders `names`); returned unchanged."""
    if isinstance(raw, dict) and raw.get("format") != fmt:
        raise PWLError(f"{path} has format {raw.get('format')!r}, expected {fmt!r}", EXPORT_FIX)
    check(OrdersFile, raw, path, "loading orders", EXPORT_FIX)
    missing = [o for o in names if o not in raw["orders"]]
    if missing:
        raise PWLError(f"loading orders {path} lack {', '.join(missing)} (they hold {', '.join(raw['orders'])})",
                       EXPORT_FIX)
    return raw
