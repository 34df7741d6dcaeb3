"""Launch-to-answer simulations: run a request stream against a loading strategy, predict the same timeline
analytically, and score timelines as accuracy against time since launch.

Strategies: 'teacher_only' (read every teacher shard, then answer), 'student_only' (the distilled student
alone), 'pwl' (student first, then teacher blocks in a given order) and 'parallel' (student first, then every
teacher shard requested at once, each block swapped in as it arrives).
"""
import os
import statistics
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

import torch

from ..errors import PWLError
from ..states import STUDENT, TEACHER, changed_block
from .progressive import ParallelModel, ProgressiveModel, TeacherOnlyModel
from .shards import CONVERTERS_FILE, STUDENT_FILE, teacher_file

STRATEGIES = ("teacher_only", "student_only", "pwl", "parallel")
READY_EVENTS = ("student_ready", "block_swapped", "teacher_complete")  # a request arriving after sees that state


@contextmanager
def torch_threads(n: int):
    """Run with at most `n` compute threads (capped by this machine's cores), then restore."""
    old = torch.get_num_threads()
    torch.set_num_threads(max(1, min(n, os.cpu_count() or 1)))
    try:
        yield
    finally:
        torch.set_num_threads(old)


def make_runtime(shard_dir: Path, profile, strategy: str, order: Optional[list[str]] = None, **kw):
    if strategy == "teacher_only":
        return TeacherOnlyModel(shard_dir, profile, **kw)
    if strategy == "student_only":
        return ProgressiveModel(shard_dir, profile, None, **kw)
    if strategy == "pwl":
        if order is None:
            raise PWLError("strategy 'pwl' needs a loading order", "pass order=[...] from all-S to all-T")
        return ProgressiveModel(shard_dir, profile, order, **kw)
    if strategy == "parallel":
        return ParallelModel(shard_dir, profile, **kw)
    raise PWLError(f"unknown strategy {strategy!r}", f"use one of {STRATEGIES}")


def run_requests(shard_dir: Path, profile, strategy: str, x: torch.Tensor, order: Optional[list[str]] = None,
                 **kw) -> dict:
    """Launch, then send `x` back to back until loading is done and one more answer came back. Returns the
    event timeline and every request (start, latency, state)."""
    runtime = make_runtime(shard_dir, profile, strategy, order, **kw)
    requests = []
    with torch_threads(profile.threads):
        runtime.start()
        try:
            while True:
                done = runtime.done
                t = time.perf_counter()
                _, state = runtime.predict(x)
                requests.append({"t": t - runtime._t0, "latency_s": time.perf_counter() - t, "state": state})
                if done:
                    break
        finally:
            runtime.stop()
    return {"strategy": strategy, "profile": profile.model_dump(), "order": order,
            "timeline": list(runtime.timeline), "requests": requests,
            "error": str(runtime.error) if runtime.error else None}


# --- analytical model -------------------------------------------------------------------------------------

def file_seconds(entry: dict, profile) -> float:
    """Time to read one file: open latency + bytes / bandwidth."""
    return profile.open_latency_s + entry["bytes"] / profile.read_bandwidth


def shared_arrivals(sizes: dict[str, int], profile, t0: float) -> dict[str, float]:
    """Arrival times of files all requested at `t0` on one device: each pays the open latency (in parallel),
    then the active files share the bandwidth equally (processor sharing: the smallest finishes first)."""
    t, done, out = t0 + profile.open_latency_s, 0.0, {}
    active = sorted(sizes, key=lambda k: (sizes[k], k))
    for k, name in enumerate(active):
        t += (sizes[name] - done) * (len(active) - k) / profile.read_bandwidth
        done = sizes[name]
        out[name] = t
    return out


def predicted_timeline(manifest: dict, profile, strategy: str, order: Optional[list[str]] = None,
                       request_s: Optional[dict] = None, build_s: Optional[dict] = None) -> list[dict]:
    """Event times if reading were the only cost, plus measured compute: `request_s` (state -> seconds of one
    request) is added to the first answer, `build_s` (file name -> seconds to deserialize and build) after
    each file. PWL's teacher loading starts at the first answer (the runtime serves first). Loading and
    requests are assumed not to slow each other. 'parallel': every teacher shard and the converters are
    requested at the first answer and share the bandwidth (`shared_arrivals`); one builder takes them in
    arrival order, and a block is swapped in once built and the converters are in."""
    n, files = manifest["num_blocks"], manifest["files"]
    req, build = request_s or {}, build_s or {}
    t, nbytes, out = 0.0, 0, [{"event": "launch", "t": 0.0, "bytes_read": 0, "state": None}]

    def read(name):
        nonlocal t, nbytes
        t += file_seconds(files[name], profile) + build.get(name, 0.0)
        nbytes += files[name]["bytes"]

    def ev(event, state, at=None):
        out.append({"event": event, "t": t if at is None else at, "bytes_read": nbytes, "state": state})

    def first_answer(state):
        ev("first_answer", state, t + req.get(state, 0.0))

    if strategy == "teacher_only":
        for i in range(1, n + 1):
            read(teacher_file(i))
        ev("teacher_complete", TEACHER * n)
        first_answer(TEACHER * n)
        return out
    read(STUDENT_FILE)
    ev("student_ready", STUDENT * n)
    first_answer(STUDENT * n)
    if strategy == "student_only":
        return out
    t = out[-1]["t"]  # the loader starts once the first answer is out
    if strategy == "parallel":
        names = [CONVERTERS_FILE, *(teacher_file(i) for i in range(1, n + 1))]
        arrive = shared_arrivals({k: files[k]["bytes"] for k in names}, profile, t)
        state, conv_in, waiting, start_bytes = STUDENT * n, False, [], nbytes
        for name in sorted(names, key=lambda k: arrive[k]):
            t = max(t, arrive[name]) + build.get(name, 0.0)
            nbytes = start_bytes + sum(min(files[k]["bytes"], files[name]["bytes"]) for k in names)
            if name == CONVERTERS_FILE:
                conv_in = True
            else:
                waiting.append(files[name]["block"] - 1)
            if conv_in:
                for i in waiting:
                    state = state[:i] + TEACHER + state[i + 1:]
                    ev("block_swapped", state)
                waiting = []
        ev("teacher_complete", state)
        return sorted(out, key=lambda e: e["t"])
    if strategy != "pwl" or order is None:
        raise PWLError(f"cannot predict strategy {strategy!r} (order {order})", f"use one of {STRATEGIES}")
    read(CONVERTERS_FILE)
    for prev, state in zip(order, order[1:]):
        read(teacher_file(changed_block(prev, state) + 1))
        ev("block_swapped", state)
    ev("teacher_complete", order[-1])
    return sorted(out, key=lambda e: e["t"])


@torch.no_grad()
def measure_request_s(mixed, x: torch.Tensor, states: list[str], warmup: int = 3) -> dict:
    """Median seconds of one request per state (5 timed runs), after `warmup` untimed passes (the device
    profile's warmup)."""
    out = {}
    for s in states:
        for _ in range(warmup):
            mixed(x, s)
        times = []
        for _ in range(5):
            t = time.perf_counter()
            mixed(x, s)
            times.append(time.perf_counter() - t)
        out[s] = statistics.median(times)
    return out


# --- scoring a timeline -----------------------------------------------------------------------------------

def load_state_accuracy(csv_path: Path, column: str = "test_acc") -> dict[str, float]:
    """state -> accuracy from an evaluate stage table (reports/metrics/{arch}/states.csv)."""
    import pandas as pd

    table = pd.read_csv(csv_path, dtype={"state": str})
    return dict(zip(table["state"], table[column].astype(float)))


def accuracy_curve(timeline: list[dict], accuracy: dict[str, float]) -> list[tuple[float, float]]:
    """Step curve (t, accuracy a request arriving from t on gets); 0 until the first state is ready."""
    curve = [(0.0, 0.0)]
    for e in sorted(timeline, key=lambda e: e["t"]):
        if e["event"] in READY_EVENTS and e["state"] is not None:
            curve.append((e["t"], float(accuracy[e["state"]])))
    return curve


def time_to_first_answer(timeline: list[dict]) -> Optional[float]:
    return next((e["t"] for e in timeline if e["event"] == "first_answer"), None)


def time_to_accuracy(curve: list[tuple[float, float]], target: float) -> Optional[float]:
    """First time the curve reaches `target` (e.g. the all-T accuracy: teacher-level), None if never."""
    return next((t for t, a in curve if a >= target), None)


def curve_area(curve: list[tuple[float, float]], horizon_s: float) -> float:
    """Area under the step curve over [0, horizon_s] (accuracy x seconds)."""
    area = 0.0
    for (t, a), (t_next, _) in zip(curve, [*curve[1:], (float("inf"), 0.0)]):
        lo, hi = min(t, horizon_s), min(t_next, horizon_s)
        area += a * max(0.0, hi - lo)
    return area


def mean_accuracy(curve: list[tuple[float, float]], horizon_s: float) -> float:
    """Area / horizon: the accuracy a request arriving uniformly at random in [0, horizon_s] gets on average."""
    if horizon_s <= 0:
        raise PWLError(f"horizon {horizon_s} s must be > 0", "use a positive horizon")
    return curve_area(curve, horizon_s) / horizon_s


def measure_build_s(shard_dir: Path, profile, order: list[str]) -> dict[str, float]:
    """Seconds to deserialize and build each file when reading is free (file name -> s), from one unthrottled
    PWL load; the converters and the teacher skeleton count towards the first teacher block. It includes the
    sha256 check and the unthrottled read from the page cache, so it is a slight upper bound. Feed it to
    `predicted_timeline(build_s=...)`."""
    from .reader import PlainReader

    runtime = ProgressiveModel(shard_dir, profile, order, reader=PlainReader(), first_answer_wait_s=0).start()
    runtime.wait()
    if runtime.error:
        raise runtime.error
    ready = [e for e in runtime.timeline if e["event"] in ("student_ready", "block_swapped")]
    out, prev = {STUDENT_FILE: ready[0]["t"]}, ready[0]["t"]
    for a, b, e in zip(order, order[1:], ready[1:]):
        out[teacher_file(changed_block(a, b) + 1)] = e["t"] - prev
        prev = e["t"]
    return out
