"""Repeated load-time runs of several strategies, summarised as medians and spread, with the analytical model,
the physical limit of the first answer and where its time goes."""
import statistics
from typing import Optional

from .pack import pack_index
from .simulate import (accuracy_curve, mean_accuracy, measure_build_s, measure_request_s, predicted_timeline,
                       run_requests, time_to_accuracy, time_to_first_answer, unthrottled_runs)

FIRST_ANSWER_STEPS = ("read_s", "skeleton_s", "verify_s", "deserialize_s", "build_s", "forward_s", "other_s")


def event_time(timeline: list[dict], event: str) -> Optional[float]:
    return next((e["t"] for e in timeline if e["event"] == event), None)


def spread(values: list) -> dict:
    vals = [v for v in values if v is not None]
    if not vals:
        return {"median": None, "min": None, "max": None}
    return {"median": statistics.median(vals), "min": min(vals), "max": max(vals)}


def rel_error(measured: Optional[float], predicted: Optional[float]) -> Optional[float]:
    if measured is None or predicted is None or predicted <= 0:
        return None
    return (measured - predicted) / predicted


def first_answer_breakdown(timeline: list[dict]) -> dict[str, float]:
    """Where the time to the first answer goes: the first request (read_s: latency + header + weights), sha256
    (verify_s), tensors from bytes (deserialize_s), the tensors put into the skeleton (build_s), the forward
    pass (forward_s: from the swap to the answer) and the rest (other_s: starting, events, publishing). The
    skeleton is built while the first request's bytes arrive: skeleton_s is inside read_s, not added to it."""
    ready = next(e for e in timeline if e["event"] in ("student_ready", "teacher_complete") and "build_s" in e)
    out = {k: ready[k] for k in ("read_s", "verify_s", "deserialize_s", "build_s")}
    out["skeleton_s"] = ready.get("skeleton_s", 0.0)
    out["forward_s"] = time_to_first_answer(timeline) - ready["t"]
    out["other_s"] = ready["t"] - sum(out[k] for k in ("read_s", "verify_s", "deserialize_s", "build_s"))
    return out


def read_ahead(timeline: list[dict]) -> Optional[float]:
    """Smallest lead of a step's read over the swap of the step before it (s): > 0 when every read k+1 started
    before block k was swapped in (reading overlaps building). None with fewer than two steps."""
    starts = [e["t"] for e in timeline if e["event"] == "read_start"]
    swaps = [e["t"] for e in timeline if e["event"] == "block_swapped"]
    leads = [swap - start for start, swap in zip(starts[1:], swaps)]
    return min(leads) if leads else None


def request_delay(requests: list[dict], request_s: dict) -> float:
    """Longest a request took beyond the warmed compute time of its state (s): what loading beside it costs."""
    return max(r["latency_s"] - request_s.get(r["state"], 0.0) for r in requests)


def compare_strategies(mixed, shard_dir, profile, strategies: dict[str, tuple], x, accuracy: dict, repeats: int,
                       horizon_s: float) -> tuple[dict, list[dict], list[dict]]:
    """Run each strategy (name -> (runtime strategy, order or None[, reader factory: () -> a fresh reader, for
    another transport than the file reader])) `repeats` times, after unthrottled file runs that warm it up and
    measure its software costs. Returns (metrics, timeline rows, curve rows of the median run)."""
    n = mixed.num_blocks
    target = accuracy["T" * n]
    index = pack_index(shard_dir)
    all_states = sorted({s for _, order, *_ in strategies.values() if order for s in order} | {"S" * n, "T" * n})
    request_s = measure_request_s(mixed, x, all_states, warmup=profile.warmup_requests)
    metrics, timeline_rows, curve_rows, floors = {}, [], [], {}
    for name, (kind, order, *transport) in strategies.items():
        key = (kind, tuple(order or ()))  # another transport of the same strategy has the same software floor
        if key not in floors:
            floors[key] = unthrottled_runs(shard_dir, profile, kind, x, order)
        floor = floors[key]
        build_s = measure_build_s(floor)
        runs = []
        for r in range(repeats):
            reader = {"reader": transport[0]()} if transport else {}
            res = run_requests(shard_dir, profile, kind, x, order=order, **reader)
            curve = accuracy_curve(res["timeline"], accuracy)
            runs.append({"timeline": res["timeline"], "curve": curve, "ttfa": time_to_first_answer(res["timeline"]),
                         "t_teacher_acc": time_to_accuracy(curve, target),
                         "loaded": event_time(res["timeline"], "teacher_complete"),
                         "mean_acc": mean_accuracy(curve, horizon_s), "requests": len(res["requests"]),
                         "breakdown": first_answer_breakdown(res["timeline"]),
                         "read_ahead": read_ahead(res["timeline"]),
                         "delay": request_delay(res["requests"], request_s),
                         "turn": max(res["loader_turns"], default=0.0)})
            for e in res["timeline"]:
                timeline_rows.append({"strategy": name, "run": r, "event": e["event"], "t": e["t"],
                                      "bytes_read": e["bytes_read"], "state": e["state"], "file": e.get("file"),
                                      "accuracy": accuracy.get(e["state"]) if e["state"] else None})
        pred = predicted_timeline(index, profile, kind, order, request_s=request_s, build_s=build_s)
        limit = time_to_first_answer(predicted_timeline(index, profile, kind, order, request_s=request_s))
        p_ttfa, p_loaded = time_to_first_answer(pred), event_time(pred, "teacher_complete")
        p_mean = mean_accuracy(accuracy_curve(pred, accuracy), horizon_s)
        m = {"ttfa_s": spread([r["ttfa"] for r in runs]),
             "time_to_teacher_acc_s": spread([r["t_teacher_acc"] for r in runs]),
             "teacher_loaded_s": spread([r["loaded"] for r in runs]),
             "mean_acc_over_horizon": spread([r["mean_acc"] for r in runs]),
             "requests_served": spread([r["requests"] for r in runs]),
             # the physical limit: first request (latency + header + weights at the bandwidth) + one forward
             "ttfa_limit_s": limit,
             "floor_ttfa_s": statistics.median(time_to_first_answer(f["timeline"]) for f in floor),
             "first_answer_breakdown_s": {k: statistics.median(r["breakdown"][k] for r in runs)
                                          for k in FIRST_ANSWER_STEPS},
             "build_s": build_s,
             "read_ahead_s": spread([r["read_ahead"] for r in runs]),
             "max_request_delay_s": spread([r["delay"] for r in runs]),
             # the loader's longest turn (a skeleton or a block built and swapped in): what a request may wait
             "max_loader_turn_s": spread([r["turn"] for r in runs]),
             "model_ttfa_s": p_ttfa, "model_teacher_loaded_s": p_loaded, "model_mean_acc_over_horizon": p_mean}
        m["ttfa_over_limit"] = m["ttfa_s"]["median"] / limit
        m["model_error_ttfa"] = rel_error(m["ttfa_s"]["median"], p_ttfa)
        m["model_error_loaded"] = rel_error(m["teacher_loaded_s"]["median"], p_loaded)
        metrics[name] = m
        median_run = sorted(runs, key=lambda r: r["ttfa"])[len(runs) // 2]
        # the plotted curve starts at the first answer (before it there is no answer, not an answer scoring 0)
        curve_rows += [{"strategy": name, "t": t, "accuracy": a} for t, a in median_run["curve"][1:]]
        curve_rows.append({"strategy": name, "t": horizon_s, "accuracy": median_run["curve"][-1][1]})
    return metrics, timeline_rows, curve_rows
