"""Compose params.yaml from conf/ for a profile, exactly as `dvc exp run -S profile=NAME` does (Hydra)."""
import sys
from pathlib import Path

from dvc.utils.hydra import compose_and_dump

from .config import load_params
from .errors import PWLError


def compose(profile: str, overrides: list[str] = (), out: Path = Path("params.yaml"), conf: Path = Path("conf")):
    conf = Path(conf).resolve()
    if not (conf / "profile" / f"{profile}.yaml").exists():
        known = sorted(p.stem for p in (conf / "profile").glob("*.yaml"))
        raise PWLError(f"unknown profile {profile!r}", f"use one of {known}")
    compose_and_dump(out, str(conf), None, "config", "", [f"profile={profile}", *overrides])
    return load_params(out)  # validate what was written


if __name__ == "__main__":
    try:
        compose(sys.argv[1] if len(sys.argv) > 1 else "default", sys.argv[2:])
    except PWLError as e:
        sys.exit(f"error: {e}")
