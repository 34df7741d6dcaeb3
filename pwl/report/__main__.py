"""`python -m pwl.report --check`: recompute every committed report folder and fail (exit 1) on any difference."""
import argparse
import sys
from pathlib import Path

from .. import paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", required=True,
                        help="recompute reports/<name>/ from the committed stage outputs and compare")
    parser.add_argument("--reports", type=Path, default=paths.REPORTS, help="the reports folder (default reports/)")
    args = parser.parse_args()
    if not args.reports.is_dir():
        print(f"error: {args.reports} is not a folder; run from the repository root", file=sys.stderr)
        sys.exit(2)
    from .check import check
    sys.exit(check(args.reports))


if __name__ == "__main__":
    main()
