"""`python -m pwl.report --check`: every committed report folder recomputed from the committed stage outputs and
the params and run record stored beside it, then compared file by file: tables (CSV, cell by cell), the data
each figure drew (tables/figure_data.json), summary.json, README.md and the index. Also: the recorded git revision is
a commit HEAD descends from (no `+`), and every stage output the report read is the one its lock.yaml holds."""
import difflib
import json
import tempfile
from pathlib import Path

import pandas as pd
import yaml

from .. import paths
from ..config import validate_params
from . import build, index, provenance, sweep

MAX_LINES = 12  # differences listed per file


def report_folders(reports: Path) -> list[Path]:
    """Every reports/<name>/ with a README.md that is not a sweep: a report (folders with only stage outputs have
    none)."""
    return sorted(p.parent for p in Path(reports).glob("*/README.md") if not sweep.is_sweep(p.parent))


def sweep_folders(reports: Path) -> list[Path]:
    return sorted(p.parent for p in Path(reports).glob(f"*/{sweep.SWEEP}"))


def check_sweep(folder: Path) -> list[str]:
    """A sweep's table and README recomputed from its runs, and every run's outputs against its lock."""
    problems = []
    for name in sweep.spec(folder)["variants"]:
        run = folder / sweep.RUNS / name
        missing = [f for f in sweep.RUN_FILES if not (run / f).exists()]
        if missing:
            problems.append(f"{sweep.RUNS}/{name}: {', '.join(missing)} missing (scripts/collect_sweep.py)")
            continue
        problems += sweep.locked_outputs(run)
    if problems:
        return problems
    with tempfile.TemporaryDirectory() as tmp:
        try:
            sweep.write(folder, Path(tmp))
        except Exception as e:
            return [f"cannot recompute: {type(e).__name__}: {e}"]
        for f in (sweep.TABLE, sweep.README):
            diffs = (compare_csv if f.endswith(".csv") else compare_text)(Path(tmp) / f, folder / f) \
                if (folder / f).exists() else ["missing from the committed folder"]
            problems += [f"{f}: {d}" for d in diffs[:MAX_LINES]]
    return problems


def compare_csv(ours: Path, theirs: Path) -> list[str]:
    """Cell-by-cell differences of two CSV tables (as written: the text of each cell)."""
    a, b = pd.read_csv(ours, dtype=str, keep_default_na=False), pd.read_csv(theirs, dtype=str, keep_default_na=False)
    if list(a.columns) != list(b.columns) or a.shape != b.shape:
        return [f"shape/columns {list(b.columns)} x {len(b)} committed, {list(a.columns)} x {len(a)} recomputed"]
    out = []
    for (i, col), committed in b.stack().items():
        if a.at[i, col] != committed:
            out.append(f"row {i + 1} `{col}`: committed {committed!r}, recomputed {a.at[i, col]!r}")
    return out


def compare_text(ours: Path, theirs: Path) -> list[str]:
    diff = difflib.unified_diff(theirs.read_text().splitlines(), ours.read_text().splitlines(), "committed",
                                "recomputed", n=0, lineterm="")
    return [line for line in diff if not line.startswith(("---", "+++"))]


def compare_folders(fresh: Path, committed: Path) -> list[str]:
    """Every file the report writes (README, summary.json, tables, tables/figure_data.json; PNGs: present)."""
    problems = []
    made = {p.relative_to(fresh) for p in fresh.rglob("*") if p.is_file()}
    for rel in sorted(made):
        there = committed / rel
        if not there.exists():
            problems.append(f"{rel}: missing from the committed folder")
            continue
        if rel.suffix == ".png":
            continue  # pixels depend on fonts and library versions; tables/figure_data.json holds what they draw
        diffs = compare_csv(fresh / rel, there) if rel.suffix == ".csv" else compare_text(fresh / rel, there)
        problems += [f"{rel}: {d}" for d in diffs[:MAX_LINES]]
        if len(diffs) > MAX_LINES:
            problems.append(f"{rel}: ... {len(diffs) - MAX_LINES} more")
    for rel in ("tables", "figures"):
        for p in sorted((committed / rel).rglob("*")):
            if p.is_file() and p.relative_to(committed) not in made:
                problems.append(f"{p.relative_to(committed)}: committed, but the report does not make it")
    return problems


def check_folder(folder: Path) -> tuple[list[str], list[str]]:
    """(problems, warnings) of one report folder."""
    missing = [f for f in (provenance.PARAMS, provenance.RUN, provenance.LOCK) if not (folder / f).exists()]
    if missing:
        return [f"{', '.join(missing)} missing: the report cannot be recomputed (rerun its `report` stage)"], []
    params = validate_params(yaml.safe_load((folder / provenance.PARAMS).read_text()), str(folder / provenance.PARAMS))
    run = json.loads((folder / provenance.RUN).read_text())
    problems, warnings = [], []
    if params.name != folder.name:
        problems.append(f"params name {params.name!r} is not the folder's name")
    why = provenance.is_committed_ancestor(run.get("git_rev"))
    if why:
        problems.append(f"git revision: {why}")
    bad = provenance.unlocked(params, yaml.safe_load((folder / provenance.LOCK).read_text()) or {})
    if bad and run.get("unlocked_reason"):
        warnings.append(f"{len(bad)} stage outputs not locked ({run['unlocked_reason']}): " + "; ".join(bad[:4])
                        + (" ..." if len(bad) > 4 else ""))
    elif bad:
        problems += [f"not locked: {b}" for b in bad]
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp) / folder.name
        try:
            build.write(params, run, fresh)
        except Exception as e:  # a stage output it needs is missing or malformed: name it, check the rest
            return problems + [f"cannot recompute: {type(e).__name__}: {e}"], warnings
        problems += compare_folders(fresh, folder)
    return problems, warnings


def _print_result(folder: Path, problems: list[str], ok: str) -> bool:
    """Print one folder's problems (or `ok`); True when it failed."""
    if not problems:
        print(f"{folder}: {ok}")
        return False
    print(f"{folder}: FAILS ({len(problems)})")
    for p in problems:
        print(f"  {p}")
    return True


def check(reports: Path = paths.REPORTS) -> int:
    """Print every difference; 0 when every report folder recomputes exactly, else 1."""
    failed = 0
    folders = report_folders(reports)
    for folder in folders:
        problems, warnings = check_folder(folder)
        for w in warnings:
            print(f"{folder}: warning: {w}")
        failed += _print_result(folder, problems, "recomputes exactly")
    sweeps = sweep_folders(reports)
    for folder in sweeps:
        failed += _print_result(folder, check_sweep(folder), "sweep recomputes exactly, every run matches its lock")
    idx = Path(reports) / "README.md"
    fresh_index = index.build(Path(reports))
    if not idx.exists() or idx.read_text() != fresh_index:
        failed += 1
        print(f"{idx}: FAILS (the index differs from one built from every folder's summary.json)")
    print(f"check FAILED: {failed} problem file(s) or folder(s)" if failed
          else f"all {len(folders)} report folders, {len(sweeps)} sweep(s) and the index recompute exactly")
    return 1 if failed else 0
