"""Compose params.yaml from conf/ for a profile, exactly as `dvc exp run -S profile=NAME` does (Hydra).

The composed params are validated before anything is written: a bad value or a typo'd key leaves the old
params.yaml in place and is one PWLError line (exit status 2), never a Hydra traceback."""
import sys
import tempfile
from pathlib import Path

import yaml
from dvc.utils.hydra import compose_and_dump

from .atomic import atomic_write
from .config import validate_params
from .errors import PWLError


def _one_line(e: Exception) -> str:
    """Hydra's message (and its cause's) without the multi-line grammar dumps and links."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip() and not ln.startswith(("See ", "To append"))]
    head = lines[0] if lines else type(e).__name__
    detail = str(e.__cause__).splitlines()[0] if e.__cause__ else (lines[1][:100] if len(lines) > 1 else "")
    return f"{head} {detail}".strip()


def compose(profile: str, overrides: list[str] = (), out: Path = Path("params.yaml"), conf: Path = Path("conf")):
    conf, out = Path(conf).resolve(), Path(out)
    if not (conf / "profile").is_dir():
        raise PWLError(f"{conf / 'profile'} not found", "run from the repository root, where conf/ lives")
    if not (conf / "profile" / f"{profile}.yaml").exists():
        known = sorted(p.stem for p in (conf / "profile").glob("*.yaml"))
        raise PWLError(f"unknown profile {profile!r}", f"use one of {known}")
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException
    with tempfile.TemporaryDirectory() as tmp:
        composed = Path(tmp) / "params.yaml"
        try:
            compose_and_dump(composed, str(conf), None, "config", "", [f"profile={profile}", *overrides])
        except (HydraException, OmegaConfBaseException) as e:
            raise PWLError(f"bad override ({' '.join(overrides)}): {_one_line(e)}",
                           "write key=value with a key that exists in conf/config.yaml (or +key=value to add "
                           "one); see https://hydra.cc/docs/advanced/override_grammar/basic") from None
        text = composed.read_bytes()
    where = f"profile {profile!r}" + (f" with {' '.join(overrides)}" if overrides else "")
    params = validate_params(yaml.safe_load(text) or {}, where)  # nothing is written unless this passes
    atomic_write(out, text)
    return params


if __name__ == "__main__":
    try:
        compose(sys.argv[1] if len(sys.argv) > 1 else "default", sys.argv[2:])
    except PWLError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
