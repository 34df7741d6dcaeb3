"""Repeated load-time runs of several strategies, summarised as medians and spread, with the analytical model."""
import statistics
from typing import Optional

from .shards import read_manifest
from .simulate import (accuracy_curve, mean_accuracy, measure_build_s, measure_request_s, predicted_timeline,
                       run_requests, time_to_accuracy, time_to_first_answer)


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


def compare_strategies(mixed, shard_dir, profile, strategies: dict[str, tuple[str, Optional[list[str]]]], x,
                       accuracy: dict, repeats: int, horizon_s: float) -> tuple[dict, list[dict], list[dict]]:
    """Run each strategy (name -> (runtime strategy, order or None)) `repeats` times. Returns (metrics,
    timeline rows, curve rows of the median run)."""
    n = mixed.num_blocks
    target = accuracy["T" * n]
    manifest = read_manifest(shard_dir)
    all_states = sorted({s for _, order in strategies.values() if order for s in order} | {"S" * n, "T" * n})
    request_s = measure_request_s(mixed, x, all_states, warmup=profile.warmup_requests)
    build_s = measure_build_s(shard_dir, profile, next(o for _, o in strategies.values() if o))
    metrics, timeline_rows, curve_rows = {}, [], []
    for name, (kind, order) in strategies.items():
        runs = []
        for r in range(repeats):
            res = run_requests(shard_dir, profile, kind, x, order=order)
            curve = accuracy_curve(res["timeline"], accuracy)
            runs.append({"timeline": res["timeline"], "curve": curve, "ttfa": time_to_first_answer(res["timeline"]),
                         "t_teacher_acc": time_to_accuracy(curve, target),
                         "loaded": event_time(res["timeline"], "teacher_complete"),
                         "mean_acc": mean_accuracy(curve, horizon_s), "requests": len(res["requests"])})
            for e in res["timeline"]:
                timeline_rows.append({"strategy": name, "run": r, "event": e["event"], "t": e["t"],
                                      "bytes_read": e["bytes_read"], "state": e["state"], "file": e.get("file"),
                                      "accuracy": accuracy.get(e["state"]) if e["state"] else None})
        pred = predicted_timeline(manifest, profile, kind, order, request_s=request_s, build_s=build_s)
        p_ttfa, p_loaded = time_to_first_answer(pred), event_time(pred, "teacher_complete")
        p_mean = mean_accuracy(accuracy_curve(pred, accuracy), horizon_s)
        m = {"ttfa_s": spread([r["ttfa"] for r in runs]),
             "time_to_teacher_acc_s": spread([r["t_teacher_acc"] for r in runs]),
             "teacher_loaded_s": spread([r["loaded"] for r in runs]),
             "mean_acc_over_horizon": spread([r["mean_acc"] for r in runs]),
             "requests_served": spread([r["requests"] for r in runs]),
             "model_ttfa_s": p_ttfa, "model_teacher_loaded_s": p_loaded, "model_mean_acc_over_horizon": p_mean}
        m["model_error_ttfa"] = rel_error(m["ttfa_s"]["median"], p_ttfa)
        m["model_error_loaded"] = rel_error(m["teacher_loaded_s"]["median"], p_loaded)
        metrics[name] = m
        median_run = sorted(runs, key=lambda r: r["ttfa"])[len(runs) // 2]
        curve_rows += [{"strategy": name, "t": t, "accuracy": a} for t, a in median_run["curve"]]
        curve_rows.append({"strategy": name, "t": horizon_s, "accuracy": median_run["curve"][-1][1]})
    return metrics, timeline_rows, curve_rows
