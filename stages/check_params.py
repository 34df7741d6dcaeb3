"""Stage `check_params`: params.yaml against the schema (pwl/config.py), before any other stage runs.

Why a stage: DVC deletes a stage's outputs just before it runs it, and a stage validates its params only once
it is running, so a bad `dvc exp run -S` value used to cost that stage's weights, metrics and logs. Every other
stage depends on this one's output; `dvc repro` runs it first (its deps are params.yaml and the schema's code)
and stops at its exit status 2, before any other stage is touched. The output's content never depends on the
params, so a change of params reruns only the stages whose own params changed."""
import argparse
import sys

from pwl import paths
from pwl.atomic import atomic_write
from pwl.config import load_params
from pwl.errors import PWLError

CHECKED = b"params.yaml passed the schema of pwl/config.py (the content never changes: see stages/check_params.py)\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args()
    try:
        load_params(args.params)
    except PWLError as e:
        print(f"error: {e}\n  (no other stage ran: their outputs are as they were)", file=sys.stderr)
        return 2
    atomic_write(paths.PARAMS_CHECKED, CHECKED)
    return 0


if __name__ == "__main__":
    sys.exit(main())
