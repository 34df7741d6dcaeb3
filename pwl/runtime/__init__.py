"""Load-time simulation of PWL: shards on a slow device, a model that upgrades itself while serving."""
from .device import PROFILES, DeviceProfile, get_profile, make_profile
from .progressive import ProgressiveModel, TeacherOnlyModel, manifest_factory
from .reader import PlainReader, ThrottledReader, TokenBucket, read_throttled
from .shards import export_shards, load_shard, model_configs, read_manifest, teacher_file
from .simulate import (accuracy_curve, curve_area, load_state_accuracy, make_runtime, mean_accuracy,
                       measure_build_s, measure_request_s, predicted_timeline, run_requests, time_to_accuracy, time_to_first_answer)

__all__ = ["PROFILES", "DeviceProfile", "get_profile", "make_profile", "ProgressiveModel", "TeacherOnlyModel",
           "manifest_factory", "PlainReader", "ThrottledReader", "TokenBucket", "read_throttled", "export_shards",
           "load_shard", "model_configs", "read_manifest", "teacher_file", "accuracy_curve", "curve_area",
           "load_state_accuracy", "make_runtime", "mean_accuracy", "measure_build_s", "measure_request_s", "predicted_timeline",
           "run_requests", "time_to_accuracy", "time_to_first_answer"]
