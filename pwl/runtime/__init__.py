"""Load-time simulation of PWL: shards on a slow device, a model that upgrades itself while serving."""
from .device import DeviceProfile, make_profile
from .orders import block_seconds, order_area, value_order
from .progressive import ParallelModel, ProgressiveModel, TeacherOnlyModel, manifest_factory
from .pack import PACK_FILE, PackIndex, step_parts
from .reader import PlainReader, ThrottledReader, TokenBucket
from .shards import export_shards, load_shard, model_configs, read_manifest, teacher_file
from .simulate import (accuracy_curve, curve_area, load_state_accuracy, make_runtime, mean_accuracy,
                       measure_build_s, measure_request_s, predicted_timeline, run_requests, shared_arrivals,
                       time_to_accuracy, time_to_first_answer, unthrottled_runs)

__all__ = ["DeviceProfile", "make_profile", "block_seconds", "order_area", "value_order", "ParallelModel",
           "ProgressiveModel", "TeacherOnlyModel", "manifest_factory", "PACK_FILE", "PackIndex", "step_parts",
           "PlainReader", "ThrottledReader", "TokenBucket", "export_shards", "load_shard", "model_configs", "read_manifest", "teacher_file",
           "accuracy_curve", "curve_area", "load_state_accuracy", "make_runtime", "mean_accuracy",
           "measure_build_s", "measure_request_s", "predicted_timeline", "run_requests", "shared_arrivals",
           "time_to_accuracy", "time_to_first_answer", "unthrottled_runs"]
