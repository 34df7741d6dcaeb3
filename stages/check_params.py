"""Stage `check_params`: params.yaml against the schema (pwl/config.py), before any other stage runs.

Why a stage: DVC deletes a stage's outputs just before it runs it, and a stage validates its params only once
it is running, so a bad `dvc exp run -S` value used to cost that stage's weights, metrics and logs. Every other
stage depends on this one's output; `dvc repro` runs it first (its deps are params.yaml and the schema's code)
and stops at its exit status 2, before any other stage is touched. The output's content never depends on the
params, so a change of params reruns only the stages whose own params changed."""
from pwl import paths
from pwl.atomic import atomic_write
from pwl.errors import PWLError
from pwl.stage_cli import main, setup

CHECKED = b"params.yaml passed the schema of pwl/config.py (the content never changes: see stages/check_params.py)\n"


def run():
    try:
        setup(__doc__, with_arch=False)
    except PWLError as e:
        raise PWLError(e.what, f"{e.fix} (no other stage ran: their outputs are as they were)") from None
    atomic_write(paths.PARAMS_CHECKED, CHECKED)


if __name__ == "__main__":
    main(run)
