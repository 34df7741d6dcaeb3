"""Launch-to-answer simulations: run a request stream against a loading strategy, predict the same timeline
analytically, and score timelines as accuracy against time since launch.

Strategies: 'teacher_only' (read the teacher in one request, then answer), 'student_only' (the distilled
student alone), 'pwl' (student first, then teacher blocks in a given order) and 'parallel' (student first, then
every teacher block requested at once, each swapped in as it arrives).
"""
import gc
import os
import statistics
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

import torch

from ..errors import PWLError
from ..manifests import EXPORT_FIX
from ..states import STUDENT, TEACHER, changed_block
from .requests import overlaps_first_read
from .strategies import ParallelModel, ProgressiveModel, TeacherOnlyModel
from .pack import STUDENT_PART, PackIndex, block_parts, parse_part, step_parts, teacher_part

STRATEGIES = ("teacher_only", "student_only", "pwl", "parallel")
ANSWER_EVENTS = ("first_answer", "state_answered")  # an answer came back from a state not answered from before


SWITCH_INTERVAL_S = 5e-4  # how long a thread may hold the GIL while another waits (Python's default: 5 ms)


@contextmanager
def serving_process():
    """How a serving process runs a timed launch. No garbage collection: what exists is collected and frozen,
    then nothing is collected until the end (a full collection takes 150-230 ms here, longer than many runs).
    A short GIL switch interval: the loader's pure-Python building would otherwise hold the interpreter for up
    to 5 ms at a time while a request waits."""
    gc.collect()
    gc.freeze()
    gc.disable()
    interval = sys.getswitchinterval()
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    try:
        yield
    finally:
        sys.setswitchinterval(interval)
        gc.enable()
        gc.unfreeze()


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
    event timeline and every request (start, latency, state). Runs as a `serving_process` (no garbage
    collection in between)."""
    runtime = make_runtime(shard_dir, profile, strategy, order, **kw)
    requests = []
    with torch_threads(profile.threads), serving_process():
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
            "timeline": list(runtime.timeline), "requests": requests, "loader_turns": list(runtime.loader_turns),
            "error": str(runtime.error) if runtime.error else None}


# --- analytical model -------------------------------------------------------------------------------------

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


def predicted_timeline(index: PackIndex, profile, strategy: str, order: Optional[list[str]] = None,
                       request_s: Optional[dict] = None, build_s: Optional[dict] = None) -> list[dict]:
    """Event times if reading (latency + bytes / bandwidth per request, from the pack's header `index`) and the
    measured compute were the only costs: `request_s` (state -> seconds of one request), `build_s` (the
    software costs `measure_build_s` gives for this strategy, see `step_costs`; the first answer takes
    `build_s['first_answer']` after the swap when given, else one request).
    The first skeleton is built while the first request's weights arrive where `overlaps_first_read` says so,
    and so is the teacher's (PWL); otherwise each is built after. PWL's teacher loading starts at the first
    answer (after the teacher's skeleton if it was not built during the first request). Reads go back to back
    on a reader; one builder builds each step once its bytes are in and the previous step is
    built. An answer from a new state comes half an old request plus one new request
    after the swap. 'parallel': every block is requested at the first answer and the requests share the
    bandwidth (`shared_arrivals`); the builder takes them in arrival order."""
    n, header = index.num_blocks, index.header_bytes
    parts = {name: index.part_bytes(name) for name in index.parts}
    req, build = request_s or {}, build_s or {}
    lat, bw = profile.open_latency_s, profile.read_bandwidth
    out = [{"event": "launch", "t": 0.0, "bytes_read": 0, "state": None}]
    nbytes = 0

    def ev(event, state, t):
        out.append({"event": event, "t": t, "bytes_read": nbytes, "state": state})

    def answered(t_swap, old, new):
        ev("state_answered", new, t_swap + req.get(old, 0.0) / 2 + req.get(new, 0.0))

    first = TEACHER * n if strategy == "teacher_only" else STUDENT * n
    first_parts = [teacher_part(i) for i in range(1, n + 1)] if strategy == "teacher_only" else [STUDENT_PART]
    nbytes = header + sum(parts[p] for p in first_parts)
    # the first skeleton is built while the weights after the header arrive (if they take long enough)
    overlap, skeleton = overlaps_first_read(nbytes - header, bw), build.get("first_skeleton", 0.0)
    read = max(nbytes / bw, header / bw + skeleton) if overlap else nbytes / bw + skeleton
    t = lat + read + build.get("first_read", 0.0) + build.get("teacher" if strategy == "teacher_only" else "student", 0.0)
    ev("teacher_complete" if strategy == "teacher_only" else "student_ready", first, t)
    t_fa = t + build.get("first_answer", req.get(first, 0.0))
    ev("first_answer", first, t_fa)
    if strategy in ("teacher_only", "student_only"):
        return out
    # the teacher's skeleton: built during the first request where it overlaps, else first thing, before any read
    t_load = t_fa + (0.0 if overlap else build.get("skeleton", 0.0))
    if strategy == "parallel":
        blocks = {i: [p for p in block_parts(i, n) if p in parts] for i in range(1, n + 1)}
        arrive = shared_arrivals({i: sum(parts[p] for p in ps) for i, ps in blocks.items()}, profile, t_load)
        steps = sorted(blocks, key=lambda i: arrive[i])
        reads = [(i, arrive[i] + build.get("verify", 0.0), sum(parts[p] for p in blocks[i])) for i in steps]
    elif strategy == "pwl" and order is not None:
        t_read, reads = t_load, []
        for a, b in zip(order, order[1:]):
            step = step_parts(a, b, parts)
            t_read += lat + sum(parts[p] for p in step) / bw + build.get("verify", 0.0)
            reads.append((changed_block(a, b) + 1, t_read, sum(parts[p] for p in step)))
    else:
        raise PWLError(f"cannot predict strategy {strategy!r} (order {order})", f"use one of {STRATEGIES}")
    built, state = t_load, STUDENT * n
    for block, t_in, size in reads:
        nbytes += size
        built = max(built, t_in) + build.get(teacher_part(block), 0.0)
        old, state = state, state[:block - 1] + TEACHER + state[block:]
        ev("block_swapped", state, built)
        answered(built, old, state)
    ev("teacher_complete", state, built)
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
    """Step curve (t, accuracy of the answers coming back from t on): 0 until the first answer, then the
    accuracy of each state from its first answer on."""
    curve = [(0.0, 0.0)]
    for e in sorted(timeline, key=lambda e: e["t"]):
        if e["event"] in ANSWER_EVENTS and e["state"] is not None:
            curve.append((e["t"], float(accuracy[e["state"]])))
    return curve


def time_to_first_answer(timeline: list[dict]) -> Optional[float]:
    return next((e["t"] for e in timeline if e["event"] == "first_answer"), None)


def time_to_accuracy(curve: list[tuple[float, float]], target: float) -> Optional[float]:
    """First time the curve reaches `target`, None if never. On `accuracy_curve` with the all-T accuracy: the
    first *answer* at teacher accuracy (not the moment such a state is swapped in)."""
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


def unthrottled_runs(shard_dir: Path, profile, strategy: str, x: torch.Tensor, order: Optional[list[str]] = None,
                     runs: int = 3) -> list[dict]:
    """`runs` runs of `strategy` with free reading, after one untimed run that warms every code path: what
    is left is the software floor (verify, deserialize, build, swap, forward, threads)."""
    from .reader import PlainReader

    out = []
    for r in range(runs + 1):
        res = run_requests(shard_dir, profile, strategy, x, order=order, reader=PlainReader())
        if res["error"]:
            raise PWLError(f"the unthrottled {strategy} run failed: {res['error']}", EXPORT_FIX)
        if r:
            out.append(res)
    return out


def measure_build_s(runs: list[dict]) -> dict[str, float]:
    """Median software seconds per step over `runs` (from `unthrottled_runs`), keyed as `step_costs` says.
    Feed it to `predicted_timeline(build_s=...)`."""
    samples: dict[str, list[float]] = {}
    for res in runs:
        for key, sec in step_costs(res["timeline"]).items():
            samples.setdefault(key, []).append(sec)
    return {k: statistics.median(v) for k, v in samples.items()}


def step_costs(timeline: list[dict]) -> dict[str, float]:
    """The software seconds of one run (with free reading) that the analytical model adds to reading:
    'first_skeleton' (built during the first request), 'first_read' (the rest of the first request's own
    cost: header, thread, copies), 'student' or 'teacher' (from its bytes in to
    the swap: verify, deserialize, build, publish), 'first_answer' (from the swap to the answer), 'skeleton'
    (the teacher's skeleton, the loader's first turn), 'verify' (per step, on the reader) and
    'teacher_<i>' (from block i's verified bytes in, or the builder free, to its swap)."""
    reads = [e for e in timeline if e["event"] == "read"]
    ready = next(e for e in timeline if e["event"] in ("student_ready", "teacher_complete") and "build_s" in e)
    first = "teacher" if ready["event"] == "teacher_complete" else "student"
    skeleton = reads[0].get("skeleton_s", 0.0)
    out = {"first_skeleton": skeleton, "first_read": max(0.0, reads[0]["read_s"] - skeleton), first: ready["t"] - reads[0]["t"],
           "first_answer": time_to_first_answer(timeline) - ready["t"]}
    skel = next((e for e in timeline if e["event"] == "skeleton_built"), None)
    if skel is None:
        return out
    out["skeleton"] = skel["skeleton_s"]
    read_at, free, verify = {e["file"]: e["t"] for e in reads[1:]}, skel["t"], []
    for e in timeline:
        if e["event"] == "block_swapped" and "build_s" in e:
            block = next(p for p in e["file"].split("+") if parse_part(p)[0] == "teacher")
            out[block] = e["t"] - max(read_at[e["file"]] + e["verify_s"], free)
            free = e["t"]
            verify.append(e["verify_s"])
    out["verify"] = statistics.median(verify)
    return out
