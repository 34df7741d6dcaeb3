"""Budgeted deployment: which loading state to ship when only so many weight bytes fit on the device.

The bytes of a state are those of the parts it runs: for each block the teacher's or the student's (block 1
with its owner's embedder, block N with its owner's head) and, at every boundary where the owner changes, the
converter that carries the features across (E_i teacher -> student, D_i student -> teacher; which ones:
pwl.states.converter_switches). They are read from the header of the exported pack (pwl.runtime.pack;
`export@arch` writes them per state to `reports/metrics/<arch>/state_bytes.csv`), so they are exactly the
tensor bytes a device would hold.

    python -m pwl.budget --arch vgg --max-bytes 2e6

names the state with the best *validation* accuracy among those that fit (ties: fewer bytes) and prints its
test accuracy, measured once. Missing files or a budget nothing fits: a message and exit status 2.
"""
import argparse
import sys
from pathlib import Path

import pandas as pd

from . import paths, table_schema
from .config import load_params
from .errors import PWLError
from .manifests import EXPORT_FIX
from .states import STUDENT, TEACHER, all_states, converter_switches, label

BYTES_TABLE = "state_bytes.csv"


def bytes_table_path(name: str, arch: str) -> Path:
    return paths.arch_metrics(name, arch, BYTES_TABLE)


def part_bytes(shard_dir: Path) -> dict[str, list[int]]:
    """Bytes per part from the pack of an export folder: teacher / student per block (embedder in block 1, head
    in block N), enc / dec converters per inner boundary (0 where a converter is an identity)."""
    from .runtime.pack import pack_index, part_name  # at use: the report reads only the tables this writes

    index = pack_index(shard_dir)
    n = index.num_blocks
    parts = {"teacher": [index.part_bytes(part_name("teacher", i + 1)) for i in range(n)],
             "student": [index.tensor_bytes(f"student.blocks.{j}.") for j in range(n)],
             **{kind: [index.part_bytes(part_name(kind, b)) if part_name(kind, b) in index.parts else 0
                       for b in range(n - 1)] for kind in ("enc", "dec")}}
    parts["student"][0] += index.tensor_bytes("student.embed.")
    parts["student"][-1] += index.tensor_bytes("student.head.")
    if sum(parts["student"]) != index.part_bytes(part_name("student")):
        raise PWLError(f"the student in {index.path} has tensors outside its embedder, blocks and head",
                       EXPORT_FIX)
    return parts


def state_bytes(parts: dict[str, list[int]], state: str) -> dict[str, int]:
    """Weight bytes `state` needs, split into teacher, student and converter bytes."""
    teacher = sum(b for b, c in zip(parts["teacher"], state) if c == TEACHER)
    student = sum(b for b, c in zip(parts["student"], state) if c == STUDENT)
    conv = sum(parts[kind][b] for kind, b in converter_switches(state))
    return {"bytes": teacher + student + conv, "teacher_bytes": teacher, "student_bytes": student,
            "converter_bytes": conv}


def state_bytes_table(shard_dir: Path) -> pd.DataFrame:
    """One row per state: its label and the bytes it needs (total, teacher, student, converters)."""
    parts = part_bytes(shard_dir)
    n = len(parts["teacher"])
    return pd.DataFrame([{"state": s, "label": label(s), **state_bytes(parts, s)} for s in all_states(n)])


def pareto_front(table: pd.DataFrame, cost: str = "bytes", value: str = "test_acc") -> pd.DataFrame:
    """The states no other state beats on both axes (fewer or equal `cost` and higher or equal `value`, one
    strictly), cheapest first; of states with equal cost and value the first by name is kept."""
    rows = table.sort_values([cost, value, "state"], ascending=[True, False, True], kind="stable")
    best, keep = float("-inf"), []
    for idx, v in zip(rows.index, rows[value]):
        if v > best:
            keep.append(idx)
            best = v
    return rows.loc[keep].reset_index(drop=True)


def choose(table: pd.DataFrame, max_bytes: float, on: str = "val_acc") -> pd.Series:
    """The state with the best `on` accuracy among those within `max_bytes` (ties: fewer bytes, then name)."""
    fits = table[table["bytes"] <= max_bytes]
    if fits.empty:
        smallest = table.loc[table["bytes"].idxmin()]
        raise PWLError(f"no state fits in {max_bytes:,.0f} bytes: the smallest, {smallest['state']}, needs "
                       f"{int(smallest['bytes']):,} bytes", f"raise --max-bytes to at least {int(smallest['bytes'])}")
    return fits.sort_values([on, "bytes", "state"], ascending=[False, True, True], kind="stable").iloc[0]


def load(name: str, arch: str, seed) -> pd.DataFrame:
    """evaluate's accuracies (val, test; fractions) of the exported replica joined with export's bytes per
    state, from report `name`."""
    states, nbytes_path = paths.states_table(name, arch, seed), bytes_table_path(name, arch)
    acc = table_schema.states_table(states, arch, seed)
    nbytes = table_schema.bytes_table(nbytes_path, arch)
    table = nbytes.merge(acc[["state", "val_acc", "test_acc"]], on="state", how="inner")
    if len(table) != len(nbytes) or len(table) != len(acc):
        raise PWLError(f"{states} and {nbytes_path} list different states",
                       f"rerun `dvc repro export@{arch}` after evaluate")
    return table


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pwl.budget", description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", required=True, help="an arch the pipeline has evaluated and exported (e.g. vgg)")
    parser.add_argument("--max-bytes", required=True, type=float, help="weight bytes the device can hold, e.g. 2e6")
    parser.add_argument("--params", default="params.yaml", help="the run whose report to read (its name and seed)")
    args = parser.parse_args(argv)
    try:
        if not args.max_bytes > 0:
            raise PWLError(f"--max-bytes {args.max_bytes} must be a positive number of bytes", "e.g. --max-bytes 2e6")
        params = load_params(args.params)
        if args.arch not in params.arch:
            raise PWLError(f"unknown arch {args.arch!r} (known in {args.params}: {', '.join(sorted(params.arch))})",
                           f"pass one the pipeline has exported, e.g. --arch {params.archs[0]}")
        table = load(params.profile, args.arch, params.seed)
        best = choose(table, args.max_bytes)
    except PWLError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    full = table.loc[table["state"] == "T" * len(best["state"])].iloc[0]
    print(f"{args.arch}: best state within {args.max_bytes:,.0f} bytes, chosen on validation: {best['state']} "
          f"({label(best['state'])}, {int(best['bytes']):,} bytes = {100 * best['bytes'] / full['bytes']:.0f}% of the "
          f"teacher's {int(full['bytes']):,})")
    print(f"  validation accuracy {100 * best['val_acc']:.2f}%, test accuracy {100 * best['test_acc']:.2f}% "
          f"(teacher {100 * full['test_acc']:.2f}%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
