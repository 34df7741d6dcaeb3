"""Rebuild one committed report folder from the committed stage outputs with the current report code, without
DVC (the `report` stage's body): reports/<name>/params.yaml gives the params (or --params a params file). Its
lock.yaml is taken from dvc.lock where that holds the stages it reads, else kept as it is. Run from a clean,
committed checkout: the report records HEAD, and `python -m pwl.report --check` fails on a `+` revision.

    python scripts/rebuild_report.py default-seeds [--unlocked-reason "why no dvc.lock holds its replicas"]
"""
import argparse
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pwl import paths  # noqa: E402
from pwl.config import validate_params  # noqa: E402
from pwl.env import environment  # noqa: E402
from pwl.report import build, index, provenance  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", help="the report folder under reports/")
    parser.add_argument("--params", type=Path, help="params file (default: reports/<name>/params.yaml)")
    parser.add_argument("--unlocked-reason", help="recorded in run.json when no dvc.lock holds the replicas")
    args = parser.parse_args()
    out_dir = paths.report_dir(args.name)
    src = args.params or out_dir / provenance.PARAMS
    if not src.exists():
        sys.exit(f"error: {src} not found; pass --params")
    params = validate_params(yaml.safe_load(src.read_text()), str(src))
    if params.name != args.name:
        sys.exit(f"error: params name {params.name!r} is not {args.name!r}")
    record = provenance.record(environment())
    if args.unlocked_reason:
        record["unlocked_reason"] = args.unlocked_reason
    lock = provenance.extract_lock(params)
    old = out_dir / provenance.LOCK  # a variant's lock outlives dvc.lock: keep it where it locks more
    if old.exists():
        prev = yaml.safe_load(old.read_text()) or {}
        if len(provenance.unlocked(params, prev)) < len(provenance.unlocked(params, lock)):
            lock = prev
    for sub in ("tables", "figures"):  # what the report makes, nothing left from an older version
        for f in sorted((out_dir / sub).rglob("*"), reverse=True):
            f.unlink() if f.is_file() else f.rmdir()
    build.write(params, record, out_dir)
    provenance.write(out_dir, params, record, lock)
    paths.INDEX.write_text(index.build(paths.REPORTS))
    print(f"{out_dir}: rebuilt at {record['git_rev']}; {len(lock['stages'])} stages locked")


if __name__ == "__main__":
    main()
