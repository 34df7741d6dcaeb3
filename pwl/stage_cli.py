"""What every stage script shares: arguments, validated params, clear errors, wall time, atomic JSON.
Imports no torch code: validating params is all a stage needs of it (a torch stage then calls
pwl.compute.seed_and_threads), so a stage depends on the model, loss and data code only if it imports them."""
import argparse
import json
import sys
import time
from contextlib import contextmanager
from pathlib import Path


from .atomic import atomic_write
from .config import Params, load_params
from .errors import PWLError

_T0 = time.perf_counter()


def elapsed() -> float:
    """Seconds since this stage process started (the stage's wall time, imports included)."""
    return time.perf_counter() - _T0


def write_json(path: Path, obj) -> None:
    """Metrics as DVC reads them (indented JSON), written atomically: a kill never leaves half a file."""
    atomic_write(path, (json.dumps(obj, indent=2, default=float) + "\n").encode())


def setup(description: str, with_arch: bool = True, roles: tuple[str, ...] = (),
          options: dict[str, str] | None = None, replica: bool = False) -> tuple[Params, argparse.Namespace]:
    """Parse the stage's arguments (`options`: more required `--name` -> help) and validate params. A `replica`
    stage (train, kd, distill, evaluate) takes `--seed`, one of `seeds`: the params it returns carry that seed,
    so one training replica is exactly the run with `seed` set to it."""
    parser = argparse.ArgumentParser(description=description)
    if with_arch:
        parser.add_argument("--arch", required=True, help="an entry of params.yaml `arch`")
    if roles:
        parser.add_argument("--role", choices=roles, required=True)
    for name, help_text in (options or {}).items():
        parser.add_argument(f"--{name}", required=True, help=help_text)
    if replica:
        parser.add_argument("--seed", type=int, required=True, help="the training replica, an entry of `seeds`")
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args()
    params = load_params(args.params)
    if replica:
        if args.seed not in params.seeds:
            raise PWLError(f"--seed {args.seed} is not one of seeds {params.seeds}",
                           "add it to `seeds` in params.yaml (dvc.yaml runs one replica per entry)")
        params = params.model_copy(update={"seed": args.seed})
    if with_arch:
        params.for_arch(args.arch)
    return params, args


def main(fn) -> None:
    """Run a stage; a PWLError becomes a short message and exit status 2, with no traceback."""
    try:
        fn()
    except PWLError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    finally:
        leave_process_group()


def leave_process_group() -> None:
    """Leave the torchrun process group cleanly: a no-op in a plain process, and in a stage that never
    imported torch.distributed (there is no group to leave)."""
    dist = sys.modules.get("torch.distributed")
    if dist is not None and dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def training_done(resume_checkpoint: Path) -> None:
    """Call once the stage's outputs are written: the resume checkpoint has served its purpose, and without
    it `dvc repro -f` really retrains instead of replaying a finished run."""
    Path(resume_checkpoint).unlink(missing_ok=True)


@contextmanager
def epoch_logger(path: Path, write: bool = True):
    """A DVCLive log with one step per epoch, yielding the `on_epoch` callback; a no-op where `write` is
    false (DDP ranks other than 0 must not write)."""
    if not write:
        yield lambda rec: None
        return
    from dvclive import Live
    live = Live(str(path), save_dvc_exp=False, dvcyaml=None)
    yield lambda rec: log_epoch(live, rec)
    live.end()


def log_epoch(live, rec: dict) -> None:
    """One DVCLive step per epoch: every number of the epoch record."""
    for k, v in rec.items():
        if k != "epoch":
            live.log_metric(k, v)
    live.next_step()
