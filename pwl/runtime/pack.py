"""The export format, and its one reader: one safetensors file per model (`model.safetensors`, the pack), laid
out in the order a device needs its bytes. Only this module names the file or parses its header: the runtime,
pwl.budget, the export and the tests read a pack through `pack_index` / `read_index` (tests/test_runtime.py).

Why one file: a hub-hosted model is one file fetched by byte ranges, and a device pays one latency per
request, not per tensor. Layout, in this order:
  header          safetensors JSON; its `__metadata__["pwl"]` holds what the first answer needs (format, block
                  count, model configs, every part's byte range and sha256, the validation accuracy table), so
                  the first answer costs one request and nothing else (no other file is read before it).
  student         every student tensor (keys `student.*`): header + student is one contiguous read.
  per block i     `converters.dec.{i-2}.*` (student -> teacher into block i), teacher block i (`teacher.*`, with
                  the embedder for block 1 and the head for block N), `converters.enc.{i-1}.*` (teacher ->
                  student out of block i).
Why converters live with a block: adding teacher block i changes the owners on its two sides only, so the
only converters a step can newly need are the two next to block i (a converter is needed exactly when its
block arrives, or never). Whatever subset a step needs is one contiguous byte range of the file.
The file is a valid safetensors file (any safetensors reader loads it); we write the header ourselves because
the library orders tensors by dtype and name, not by when they are needed.
Part names (one scheme, `part_name` / `parse_part`): `student`, `teacher_<block>` (1-based), `enc.<boundary>` and
`dec.<boundary>` (0-based inner boundary).
"""
import hashlib
import json
import re
import struct
from dataclasses import dataclass
from pathlib import Path

import torch

from ..atomic import atomic_write
from ..errors import PWLError
from ..manifests import EXPORT_FIX
from ..states import converter_switches

PACK_FILE = "model.safetensors"
PACK_FORMAT = "pwl-pack/1"
DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
          "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
          "BOOL": torch.bool}
DTYPE_NAMES = {v: k for k, v in DTYPES.items()}


STUDENT_PART = "student"
CONVERTER_KINDS = ("enc", "dec")  # enc: teacher -> student, dec: student -> teacher


def part_name(kind: str, index: int | None = None) -> str:
    """The name of a part: ("student"), ("teacher", block 1-based) or ("enc"/"dec", boundary 0-based)."""
    if kind == STUDENT_PART and index is None:
        return STUDENT_PART
    if kind == "teacher" and isinstance(index, int) and index >= 1:
        return f"teacher_{index}"
    if kind in CONVERTER_KINDS and isinstance(index, int) and index >= 0:
        return f"{kind}.{index}"
    raise ValueError(f"no part ({kind!r}, {index!r})")


def parse_part(name: str) -> tuple[str, int | None]:
    """The inverse of `part_name`: (kind, index)."""
    if name == STUDENT_PART:
        return STUDENT_PART, None
    if m := re.fullmatch(r"teacher_([1-9][0-9]*)", name):
        return "teacher", int(m.group(1))
    if m := re.fullmatch(r"(enc|dec)\.(0|[1-9][0-9]*)", name):
        return m.group(1), int(m.group(2))
    raise PWLError(f"{name!r} is not a part name of a pack", EXPORT_FIX)


def teacher_part(block: int) -> str:
    """Part name of teacher block `block` (1-based)."""
    return part_name("teacher", block)


def converter_part(kind: str, boundary: int) -> str:
    """Part name of converter `kind` ('enc' teacher -> student, 'dec' student -> teacher) at 0-based `boundary`."""
    return part_name(kind, boundary)


def needed_converters(state: str) -> set[str]:
    """Converter parts `state` runs (pwl.states.converter_switches)."""
    return {converter_part(kind, b) for kind, b in converter_switches(state)}


def owned_converters(block: int, num_blocks: int) -> list[str]:
    """The converter parts stored with teacher block `block` (1-based), in file order: into it (dec), out of it (enc)."""
    return ([converter_part("dec", block - 2)] if block > 1 else []) + \
           ([converter_part("enc", block - 1)] if block < num_blocks else [])


def block_parts(block: int, num_blocks: int) -> list[str]:
    """Every part stored for teacher block `block`, in file order."""
    owned = owned_converters(block, num_blocks)
    return ([p for p in owned if parse_part(p)[0] == "dec"] + [teacher_part(block)]
            + [p for p in owned if parse_part(p)[0] == "enc"])


def step_parts(prev: str, state: str, available) -> list[str]:
    """Parts a step from `prev` to `state` reads, in file order: the new teacher block and the converters `state`
    runs that `prev` did not (identity converters have no bytes and are not among the `available` parts)."""
    block = next(j for j, (a, b) in enumerate(zip(prev, state)) if a != b) + 1
    new = needed_converters(state) - needed_converters(prev)
    return [p for p in block_parts(block, len(state)) if p == teacher_part(block) or (p in new and p in available)]


def write_pack(path: Path, parts: dict[str, dict[str, torch.Tensor]], meta: dict) -> dict:
    """Write `parts` (name -> {tensor key -> tensor}, in the order a device needs them) as one safetensors file.
    `meta` (JSON-able) goes into the header with each part's data range and sha256. Returns that metadata
    and the header's size in bytes (`header_bytes`)."""
    header, blobs, pos, ranges = {}, [], 0, {}
    for name, tensors in parts.items():
        start = pos
        for key, t in tensors.items():
            t = t.detach().cpu().contiguous()
            if not t.numel():
                raise PWLError(f"tensor {key} is empty", "a pack stores tensors with at least one element")
            raw = t.reshape(-1).view(torch.uint8).numpy().tobytes()
            header[key] = {"dtype": DTYPE_NAMES[t.dtype], "shape": list(t.shape), "data_offsets": [pos, pos + len(raw)]}
            blobs.append(raw)
            pos += len(raw)
        if pos > start:  # identity converters have no tensors: no part
            ranges[name] = {"start": start, "end": pos,
                            "sha256": hashlib.sha256(b"".join(blobs[-len(tensors):])).hexdigest()}
    full = {**meta, "format": PACK_FORMAT, "parts": ranges}
    head = header_bytes(header, full)
    atomic_write(Path(path), head + b"".join(blobs))
    return {**full, "header_bytes": len(head)}


def header_bytes(tensors: dict, meta: dict) -> bytes:
    """A pack's header as stored: 8 bytes giving the JSON's length, then the JSON (the tensor entries and the pwl
    metadata), padded with spaces to a multiple of 8 (safetensors aligns the data section)."""
    text = json.dumps({**tensors, "__metadata__": {"pwl": json.dumps(meta, separators=(",", ":"))}},
                      separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text


def split_pack(blob: bytes) -> tuple[dict, dict, bytes]:
    """(tensor entries, metadata, data section) of a whole pack's bytes, unchecked: the inverse of
    `header_bytes(tensors, meta) + data`, for tools that must edit a header (the tests forging damaged ones)."""
    (n,) = struct.unpack("<Q", blob[:8])
    tensors = json.loads(blob[8:8 + n])
    return tensors, json.loads(tensors.pop("__metadata__")["pwl"]), blob[8 + n:]


@dataclass(frozen=True)
class PackIndex:
    """The header of a pack: where every tensor and part lies (absolute file offsets) and the metadata."""
    path: str
    meta: dict
    tensors: dict  # key -> (dtype, shape, start, end)
    parts: dict  # part name -> (start, end, sha256)
    header_bytes: int  # the 8-byte length and the JSON header: what precedes the first part

    @property
    def num_blocks(self) -> int:
        return self.meta["num_blocks"]

    def tensor_bytes(self, prefix: str) -> int:
        """Bytes of the tensors whose keys start with `prefix` (e.g. `student.blocks.0.`)."""
        return sum(end - start for key, (_, _, start, end) in self.tensors.items() if key.startswith(prefix))

    def span(self, names: list[str]) -> tuple[int, int]:
        """The byte range covering `names` (parts next to each other in the file)."""
        rs = sorted(self.parts[n][:2] for n in names)
        if any(a[1] != b[0] for a, b in zip(rs, rs[1:])):
            raise PWLError(f"parts {names} of {self.path} are not contiguous", EXPORT_FIX)
        return rs[0][0], rs[-1][1]

    def part_bytes(self, name: str) -> int:
        start, end, _ = self.parts[name]
        return end - start

    def verify(self, name: str, buf: bytearray, buf_start: int) -> None:
        """Check part `name` inside `buf` (the file's bytes from offset `buf_start`) against its sha256."""
        start, end, sha = self.parts[name]
        view = memoryview(buf)[start - buf_start:end - buf_start]
        if len(view) != end - start or hashlib.sha256(view).hexdigest() != sha:
            raise PWLError(f"part {name} of {self.path} is corrupt or truncated: {len(view)} of its {end - start} "
                           f"bytes arrived and they do not match the sha256 in the header", EXPORT_FIX)

    def tensors_of(self, name: str, buf: bytearray, buf_start: int) -> dict[str, torch.Tensor]:
        """The tensors of part `name` inside `buf`, sharing its memory (no copy)."""
        start, end, _ = self.parts[name]
        return {key: torch.frombuffer(buf, dtype=dtype, count=(b - a) // dtype.itemsize,
                                      offset=a - buf_start).reshape(shape)
                for key, (dtype, shape, a, b) in self.tensors.items() if start <= a < b <= end}


def _whole(v, what: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise ValueError(f"{what} is {v!r}, not a whole number >= 0")
    return v


def check_header(tensors: dict, parts: dict, meta: dict, base: int) -> None:
    """The header fields the runtime trusts that no sha256 covers (the hashes cover the parts' bytes only):
    the block count matches the teacher parts, every part's range and hash are well formed, every tensor's
    shape holds exactly its bytes and lies inside one part. ValueError naming the field otherwise."""
    n = meta.get("num_blocks")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"num_blocks is {n!r}, not a whole number >= 1")
    teachers = sorted(k for k in parts if k.startswith("teacher_"))
    if teachers != sorted(teacher_part(b) for b in range(1, n + 1)):
        raise ValueError(f"num_blocks is {n} but the teacher parts are {teachers}")
    if STUDENT_PART not in parts:
        raise ValueError(f"no part {STUDENT_PART!r}")
    for name, (start, end, sha) in parts.items():
        if _whole(start - base, f"part {name} start") > _whole(end - base, f"part {name} end"):
            raise ValueError(f"part {name} ends ({end - base}) before it starts ({start - base})")
        if not (isinstance(sha, str) and len(sha) == 64 and all(c in "0123456789abcdef" for c in sha)):
            raise ValueError(f"part {name} sha256 {sha!r} is not 64 hex digits")
    spans = sorted((a, b) for a, b, _ in parts.values())
    for key, (dtype, shape, a, b) in tensors.items():
        count = 1
        for d in shape:
            count *= _whole(d, f"a dimension of tensor {key}'s shape {list(shape)}")
        _whole(a - base, f"tensor {key} start")
        if b - a != count * dtype.itemsize:
            raise ValueError(f"tensor {key}: shape {list(shape)} of {dtype} needs {count * dtype.itemsize} bytes, its "
                             f"offsets hold {b - a}")
        if not any(s <= a and b <= e for s, e in spans):
            raise ValueError(f"tensor {key} (bytes {a - base}..{b - base}) lies in no part")


def read_index(f) -> PackIndex:
    """The header of the pack open as `f` (a reader's file: `path`, `read_at(offset, size)`): 8 bytes giving
    its length, then the JSON."""
    path = f.path
    try:
        (n,) = struct.unpack("<Q", bytes(f.read_at(0, 8)))
        if n > 100_000_000:
            raise ValueError(f"header length {n} is implausible")
        raw = json.loads(bytes(f.read_at(8, n)))
        meta = json.loads(raw.pop("__metadata__")["pwl"])
        if meta.get("format") != PACK_FORMAT:
            raise ValueError(f"format {meta.get('format')!r}, expected {PACK_FORMAT!r}")
        base = 8 + n
        tensors = {k: (DTYPES[v["dtype"]], tuple(v["shape"]), base + v["data_offsets"][0], base + v["data_offsets"][1])
                   for k, v in raw.items()}
        parts = {k: (base + v["start"], base + v["end"], v["sha256"]) for k, v in meta.pop("parts").items()}
        meta["configs"]["student"], meta["configs"]["teacher"]
        check_header(tensors, parts, meta, base)
    except (struct.error, ValueError, KeyError, IndexError, TypeError, AttributeError, UnicodeDecodeError) as e:
        raise PWLError(f"the header of {path} is unreadable ({type(e).__name__}: {e})", EXPORT_FIX) from None
    return PackIndex(str(path), meta, tensors, parts, base)


def pack_path(shard_dir: Path) -> Path:
    """Where the pack of an export folder lies."""
    return Path(shard_dir) / PACK_FILE


def pack_index(shard_dir: Path) -> PackIndex:
    """The pack's header read straight from disk (for checks, budgets and models; the runtime reads it
    throttled, through `read_index`)."""
    from .reader import PlainReader

    path = pack_path(shard_dir)
    try:
        with PlainReader().open(path) as f:
            return read_index(f)
    except OSError as e:
        raise PWLError(f"cannot read {path} ({e})", EXPORT_FIX) from None
