"""Cold launch: what a user waits for from starting `python` to the first answer, imports included.

`cold_launch` starts a fresh interpreter that notes the time, imports torch and the runtime, reads the student
from a throttled device, answers one request and prints wall-clock times (JSON); the parent noted the time
before starting it, so the wait splits into interpreter start, imports and the first answer itself.
"""
import json
import subprocess
import sys
import time
from pathlib import Path

CHILD = ("import sys, time; started = time.time(); import torch, pwl.runtime.cold as cold; "
         "cold.answer(started, *sys.argv[1:])")


def cold_launch(shard_dir: Path, profile) -> dict:
    """Seconds from before a fresh `python` starts to its first answer from the student (PWL's first answer),
    split into interpreter start, imports (torch, the runtime) and the rest (read, build, forward). Run from
    the repository root (the child imports `pwl` from there)."""
    from ..errors import PWLError

    t0 = time.time()
    done = subprocess.run([sys.executable, "-c", CHILD, str(shard_dir), str(profile.read_bandwidth),
                           str(profile.open_latency_s)], capture_output=True, text=True, timeout=600)
    if done.returncode:
        raise PWLError(f"the cold-launch process failed: {done.stderr.strip().splitlines()[-1:]}",
                       f"run python -c {CHILD!r} <shard dir> <bandwidth> <latency> to see why")
    t = json.loads(done.stdout.strip().splitlines()[-1])
    return {"interpreter_s": t["started"] - t0, "imports_s": t["imported"] - t["started"],
            "load_and_answer_s": t["first_answer"] - t["imported"], "first_answer_s": t["first_answer"] - t0}


def answer(started: float, shard_dir: str, bandwidth: str, latency: str) -> None:
    """In the fresh process, once imported: serve the first answer and print the times."""
    import torch

    from ..config import make_profile
    from .strategies import ProgressiveModel
    imported = time.time()
    torch.set_num_threads(1)
    model = ProgressiveModel(shard_dir, make_profile({"name": "cold", "read_bandwidth": float(bandwidth),
                                                      "open_latency_s": float(latency)})).start()
    cfg = model.index.meta["configs"]
    model.predict(torch.zeros(1, cfg["in_chans"], cfg["img_size"], cfg["img_size"]))
    print(json.dumps({"started": started, "imported": imported, "first_answer": time.time()}))
