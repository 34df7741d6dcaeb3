"""The tables one stage writes and another tool trusts (evaluate's states.csv, export's state_bytes.csv), read
against a schema: the expected columns, one row per loading state and every state once, and every cell
numeric, finite and in range. Why: a hand-edited or damaged table used to give a silently wrong answer (a NaN
row skipped, an accuracy of 750%, a teacher of -5 bytes) or a traceback; now it is a PWLError naming the file,
the row (its line in the file) and the column, with the stage that rewrites it."""
import math
import re
from pathlib import Path

import pandas as pd

from .errors import PWLError
from .states import all_states

FRACTION, BYTES, TEXT = "an accuracy in [0, 1]", "a whole number of bytes >= 0", "text"
# evaluate@arch-seed writes states.csv; export@arch writes state_bytes.csv
STATES_COLUMNS = {"state": TEXT, "val_acc": FRACTION, "test_acc": FRACTION}
BYTES_COLUMNS = {"state": TEXT, "bytes": BYTES, "teacher_bytes": BYTES, "student_bytes": BYTES,
                 "converter_bytes": BYTES}
WHOLE = re.compile(r"\+?[0-9]+")


def _cell(text: str, kind: str):
    """The value of one cell of `kind`, or None where it is not one."""
    if kind == TEXT:
        return text
    if kind == BYTES:
        return int(text) if WHOLE.fullmatch(text) else None
    try:
        x = float(text)
    except ValueError:
        return None
    return x if math.isfinite(x) and 0.0 <= x <= 1.0 else None


def read_table(path: Path, columns: dict[str, str], stage: str) -> pd.DataFrame:
    """`path` as a DataFrame with `columns` typed (str, float or int): one row per loading state of one
    length, every state once, each cell of its kind; else a PWLError naming file, row and column and the
    `stage` (dvc.yaml name) that writes it."""
    path = Path(path)
    if not path.exists():
        raise PWLError(f"{path} is missing", f"run `dvc repro {stage}` (from the repository root) first")
    fix = f"rewrite it with `dvc repro -f {stage}` (or restore it: `git checkout -- {path}`)"
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False)
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        raise PWLError(f"{path} is not a readable CSV table ({type(e).__name__}: {str(e).strip()[:200]})",
                       fix) from None
    missing = [c for c in columns if c not in raw.columns]
    if missing:
        raise PWLError(f"{path} has no column {', '.join(missing)} (its columns: {', '.join(raw.columns)})", fix)
    if raw.empty:
        raise PWLError(f"{path} has no rows (one per loading state expected)", fix)
    out = {}
    for col, kind in columns.items():
        values = []
        for i, text in enumerate(raw[col]):
            v = _cell(text.strip(), kind)
            if v is None or v == "":
                state = raw["state"].iloc[i] if "state" in raw.columns else "?"
                raise PWLError(f"{path}, row {i + 2} (state {state!r}), column {col!r}: {text!r} is not {kind}"
                               if text.strip() else f"{path}, row {i + 2} (state {state!r}), column {col!r} "
                               f"is empty ({kind} expected)", fix)
            values.append(v)
        out[col] = values
    states = [s.strip() for s in out["state"]]
    n = len(states[0])
    for i, s in enumerate(states):
        if not re.fullmatch(r"[ST]+", s) or len(s) != n:
            raise PWLError(f"{path}, row {i + 2}, column 'state': {s!r} is not a loading state of {n} letters S/T "
                           f"(as row 2's {states[0]!r})", fix)
    seen: dict[str, int] = {}
    for i, s in enumerate(states):
        if s in seen:
            raise PWLError(f"{path}, row {i + 2}, column 'state': {s!r} repeats row {seen[s] + 2}", fix)
        seen[s] = i
    absent = [s for s in all_states(n) if s not in seen]
    if absent:
        raise PWLError(f"{path} lacks {len(absent)} of the {2 ** n} loading states of {n} blocks "
                       f"(e.g. {absent[0]!r})", fix)
    out["state"] = states
    table = raw.copy()
    for col in columns:
        table[col] = out[col]
    return table


def states_table(path: Path, arch: str, seed) -> pd.DataFrame:
    """evaluate's accuracies per loading state (fractions), validated."""
    return read_table(path, STATES_COLUMNS, f"evaluate@{arch}-{seed}")


def bytes_table(path: Path, arch: str) -> pd.DataFrame:
    """export's weight bytes per loading state, validated (the parts add up to the total)."""
    table = read_table(path, BYTES_COLUMNS, f"export@{arch}")
    parts = table["teacher_bytes"] + table["student_bytes"] + table["converter_bytes"]
    bad = (parts != table["bytes"]).to_numpy().nonzero()[0]
    if len(bad):
        i = int(bad[0])
        raise PWLError(f"{path}, row {i + 2} (state {table['state'].iloc[i]!r}), column 'bytes': "
                       f"{table['bytes'].iloc[i]} is not teacher_bytes + student_bytes + converter_bytes "
                       f"({parts.iloc[i]})", f"rewrite it with `dvc repro -f export@{arch}`")
    return table
