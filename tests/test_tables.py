"""Tables that lie (issue 18): evaluate's states.csv and export's state_bytes.csv, as pwl.budget and the export
and loadsim stages read them. A non-finite, out-of-range, negative, non-numeric, empty or missing cell, a row
too few or too many, a lost column: exit 2 naming the file, the row and the column, never a traceback and never a
silently wrong answer. Generated cases are derandomized (no example database in the repo)."""
import math
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pwl import budget, table_schema
from pwl.errors import PWLError
from pwl.profile import compose
from pwl.states import all_states, label

REPO = Path(__file__).resolve().parents[1]
N = 3
STATES = all_states(N)
SETTINGS = settings(max_examples=300, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


def good_tables() -> tuple[pd.DataFrame, pd.DataFrame]:
    """states.csv and state_bytes.csv of a 3-block model, as evaluate and export write them."""
    acc = pd.DataFrame({"state": STATES, "label": [label(s) for s in STATES],
                        "teacher_blocks": [s.count("T") for s in STATES],
                        "val_acc": [0.5 + 0.05 * s.count("T") for s in STATES],
                        "test_acc": [0.49 + 0.05 * s.count("T") for s in STATES]})
    t = [1000 * s.count("T") for s in STATES]
    st_ = [100 * s.count("S") for s in STATES]
    c = [10 * sum(a != b for a, b in zip(s, s[1:])) for s in STATES]
    nbytes = pd.DataFrame({"state": STATES, "label": [label(s) for s in STATES],
                           "bytes": [a + b + d for a, b, d in zip(t, st_, c)], "teacher_bytes": t,
                           "student_bytes": st_, "converter_bytes": c})
    return acc, nbytes


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("budget")
    compose("smoke", out=root / "params.yaml", conf=REPO / "conf")
    metrics = root / "reports" / "smoke" / "metrics" / "vgg"
    (metrics / "s0").mkdir(parents=True)
    return {"root": root, "states": metrics / "s0" / "states.csv", "bytes": metrics / "state_bytes.csv"}


def write(run_dir, acc: pd.DataFrame, nbytes: pd.DataFrame) -> None:
    acc.to_csv(run_dir["states"], index=False, float_format="%.5f")
    nbytes.to_csv(run_dir["bytes"], index=False)


def run_budget(run_dir, capsys, *args) -> tuple[int, str, str]:
    """pwl.budget's main in this process (the CLI's exit status and output; a traceback fails the test)."""
    cwd = os.getcwd()
    os.chdir(run_dir["root"])
    try:
        rc = budget.main(["--arch", "vgg", *args])
    finally:
        os.chdir(cwd)
    out = capsys.readouterr()
    return rc, out.out, out.err


# ------------------------------------------------------------------ one test per fault of the issue

@pytest.mark.parametrize("table, row, col, value, needle", [
    ("states", 3, "val_acc", "nan", "is not an accuracy in [0, 1]"),
    ("states", 0, "test_acc", "inf", "is not an accuracy in [0, 1]"),
    ("states", 7, "val_acc", "7.5", "is not an accuracy in [0, 1]"),
    ("states", 2, "val_acc", "-0.1", "is not an accuracy in [0, 1]"),
    ("states", 4, "test_acc", "abc", "is not an accuracy in [0, 1]"),
    ("states", 5, "val_acc", "", "is empty"),
    ("states", 1, "state", "TTX", "is not a loading state"),
    ("bytes", 6, "teacher_bytes", "-5", "is not a whole number of bytes >= 0"),
    ("bytes", 6, "bytes", "12.5", "is not a whole number of bytes >= 0"),
    ("bytes", 6, "student_bytes", "1e3", "is not a whole number of bytes >= 0"),
    ("bytes", 2, "bytes", "99999", "is not teacher_bytes + student_bytes + converter_bytes"),
])
def test_a_bad_cell_names_file_row_and_column(run_dir, capsys, table, row, col, value, needle):
    acc, nbytes = good_tables()
    df = acc if table == "states" else nbytes
    df[col] = df[col].astype(object)
    df.loc[row, col] = value
    write(run_dir, acc, nbytes)
    rc, out, err = run_budget(run_dir, capsys, "--max-bytes", "2e6")
    path = run_dir[table].relative_to(run_dir["root"])
    assert rc == 2 and not out, (out, err)
    assert f"{path}, row {row + 2}" in err and f"column '{'bytes' if 'teacher_bytes +' in needle else col}'" in err
    assert needle in err and "how to fix: rewrite it with `dvc repro -f" in err


@pytest.mark.parametrize("damage, needle", [
    (lambda a, b: (a.drop(index=3), b), "lacks 1 of the 8 loading states"),
    (lambda a, b: (pd.concat([a, a.iloc[[2]]]), b), "repeats row 4"),
    (lambda a, b: (a.drop(columns="test_acc"), b), "has no column test_acc"),
    (lambda a, b: (a.iloc[:0], b), "has no rows"),
    (lambda a, b: (a, b.drop(columns="converter_bytes")), "has no column converter_bytes"),
    (lambda a, b: (a, b.iloc[:4]), "lacks 4 of the 8 loading states"),
])
def test_incomplete_tables(run_dir, capsys, damage, needle):
    write(run_dir, *damage(*good_tables()))
    rc, out, err = run_budget(run_dir, capsys, "--max-bytes", "2e6")
    assert rc == 2 and needle in err and "Traceback" not in err, err


def test_unreadable_tables(run_dir, capsys):
    write(run_dir, *good_tables())
    run_dir["states"].write_bytes(b"")
    rc, _, err = run_budget(run_dir, capsys, "--max-bytes", "2e6")
    assert rc == 2 and "is not a readable CSV table" in err
    run_dir["states"].write_bytes(b"state,val_acc,test_acc\n\xff\xfe,0.5,0.5\n")
    rc, _, err = run_budget(run_dir, capsys, "--max-bytes", "2e6")
    assert rc == 2 and "states.csv" in err


def test_unknown_arch_lists_the_known_ones(run_dir, capsys):
    write(run_dir, *good_tables())
    cwd = os.getcwd()
    os.chdir(run_dir["root"])
    try:
        rc = budget.main(["--arch", "nope", "--max-bytes", "2e6"])
    finally:
        os.chdir(cwd)
    err = capsys.readouterr().err
    assert rc == 2 and "unknown arch 'nope'" in err and "vgg" in err and "resnet" in err and "missing" not in err


def test_good_tables_give_the_right_answer(run_dir, capsys):
    write(run_dir, *good_tables())
    rc, out, err = run_budget(run_dir, capsys, "--max-bytes", "2300")
    assert rc == 0, err
    # 60%: TTS, STT (2110 bytes each: the first by name wins), TST (2120); TTT (3000 bytes) does not fit
    assert "chosen on validation: STT (suffix, 2,110 bytes" in out and "validation accuracy 60.00%" in out


def test_export_stops_before_a_nan_accuracy_reaches_a_pack(tmp_path):
    """The export stage validates states.csv before loading anything: exit 2 naming the cell, nothing written."""
    compose("smoke", out=tmp_path / "params.yaml", conf=REPO / "conf")
    acc, _ = good_tables()
    acc["val_acc"] = acc["val_acc"].astype(object)
    acc.loc[5, "val_acc"] = "nan"
    states = tmp_path / "reports" / "smoke" / "metrics" / "vgg" / "s0" / "states.csv"
    states.parent.mkdir(parents=True)
    acc.to_csv(states, index=False)
    before = sorted(p for p in tmp_path.rglob("*"))
    res = subprocess.run([sys.executable, "-m", "stages.export", "--arch", "vgg"], cwd=tmp_path, text=True,
                         capture_output=True, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=120)
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
    assert "states.csv, row 7 (state 'TST'), column 'val_acc': 'nan' is not an accuracy in [0, 1]" in res.stderr
    assert sorted(p for p in tmp_path.rglob("*")) == before


# ------------------------------------------------------------------ generated tables

CELLS = st.one_of(
    st.sampled_from(["nan", "NaN", "inf", "-inf", "", " ", "abc", "-5", "-0", "0", "1", "1.0", "1.5", "7.5",
                     "0.5", "1e3", "1e999", "-1e-9", "0x10", "None", "null", "TRUE", "12.", ".5", "+3", "1_000",
                     "3 4", "SST", "TTT", "TT", "TTTT", "tts", "0.99999", "1.00001"]),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(-10 ** 20, 10 ** 20).map(str),
    st.text(max_size=5).filter(lambda t: t.isprintable() and '"' not in t and "," not in t))


@st.composite
def damaged_tables(draw):
    """The good tables with a few cells replaced, rows dropped or repeated, or a column lost; returns the
    tables and the (table, row, column) of every cell changed."""
    acc, nbytes = good_tables()
    tables = {"states": acc.astype(object), "bytes": nbytes.astype(object)}
    changed = []
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["cell", "cell", "cell", "drop_row", "repeat_row", "drop_column"]))
        name = draw(st.sampled_from(["states", "bytes"]))
        df = tables[name]
        if df.empty:
            continue
        if kind == "cell":
            row = draw(st.integers(0, len(df) - 1))
            col = draw(st.sampled_from(list(df.columns)))
            df.iloc[row, df.columns.get_loc(col)] = draw(CELLS)
            changed.append((name, row, col))
        elif kind == "drop_row":
            tables[name] = df.drop(index=df.index[draw(st.integers(0, len(df) - 1))]).reset_index(drop=True)
            changed.append((name, None, None))
        elif kind == "repeat_row":
            tables[name] = pd.concat([df, df.iloc[[draw(st.integers(0, len(df) - 1))]]]).reset_index(drop=True)
            changed.append((name, None, None))
        else:
            tables[name] = df.drop(columns=draw(st.sampled_from(list(df.columns))))
            changed.append((name, None, None))
    return tables["states"], tables["bytes"], changed


def independent_check(acc_path: Path, bytes_path: Path):
    """What the tables should say, read with the csv module (not the code under test): None where they are
    not valid, else {state: (val_acc, test_acc, bytes)}."""
    import csv

    def rows(p):
        with open(p, newline="") as f:
            return list(csv.DictReader(f))
    try:
        a, b = rows(acc_path), rows(bytes_path)
    except (UnicodeDecodeError, csv.Error):
        return None

    def frac(x):
        try:
            v = float(x)
        except (TypeError, ValueError):
            return None
        return v if math.isfinite(v) and 0 <= v <= 1 else None

    def whole(x):
        digits = (x or "").strip()
        digits = digits[1:] if digits.startswith("+") else digits
        return int(digits) if digits and all(c in "0123456789" for c in digits) else None
    acc = {}
    for r in a:
        s, v, t = (r.get("state") or "").strip(), frac(r.get("val_acc")), frac(r.get("test_acc"))
        if v is None or t is None or s in acc:
            return None
        acc[s] = (v, t)
    nb = {}
    for r in b:
        s = (r.get("state") or "").strip()
        vals = [whole(r.get(k)) for k in ("bytes", "teacher_bytes", "student_bytes", "converter_bytes")]
        if None in vals or s in nb or vals[0] != sum(vals[1:]):
            return None
        nb[s] = vals[0]
    if set(acc) != set(STATES) or set(nb) != set(STATES):
        return None
    return {s: (*acc[s], nb[s]) for s in STATES}


@SETTINGS
@given(tables=damaged_tables(), max_bytes=st.sampled_from([1, 500, 2300, 3000, 1e9]))
def test_generated_tables_for_budget(run_dir, capsys, tables, max_bytes):
    """Exit 2 with a message naming the file (and the row and column of a changed cell), or exit 0 with the
    answer the tables really give."""
    acc, nbytes, changed = tables
    write(run_dir, acc, nbytes)
    rc, out, err = run_budget(run_dir, capsys, "--max-bytes", str(max_bytes))
    truth = independent_check(run_dir["states"], run_dir["bytes"])
    assert rc in (0, 2) and "Traceback" not in err
    if truth is None:
        assert rc == 2 and err.startswith("error: ") and ("states.csv" in err or "state_bytes.csv" in err), err
        return
    fits = {s: v for s, v in truth.items() if v[2] <= max_bytes}
    if not fits:
        assert rc == 2 and "no state fits" in err
        return
    best = sorted(fits, key=lambda s: (-fits[s][0], fits[s][2], s))[0]
    assert rc == 0 and f"chosen on validation: {best} " in out, (out, err)
    assert f"validation accuracy {100 * truth[best][0]:.2f}%" in out


@SETTINGS
@given(tables=damaged_tables())
def test_generated_states_tables_for_export(run_dir, tables):
    """What export (and loadsim) read: a PWLError naming the file, or a table whose every state has finite
    accuracies in [0, 1] (never a NaN for the pack's manifest)."""
    acc, _, changed = tables
    acc.to_csv(run_dir["states"], index=False)
    try:
        table = table_schema.states_table(run_dir["states"], "vgg", 0)
    except PWLError as e:
        assert str(run_dir["states"]) in str(e)
        cells = [(r, c) for t, r, c in changed if t == "states" and r is not None]
        if len(cells) == len(changed) == 1 and "row" in str(e):
            assert f"row {cells[0][0] + 2}" in str(e), str(e)
        return
    assert sorted(table["state"]) == sorted(STATES)
    for col in ("val_acc", "test_acc"):
        assert all(math.isfinite(v) and 0 <= v <= 1 for v in table[col])
