"""Load-time simulation of PWL: a pack on a slow device, a model that upgrades itself while serving."""
from .device import DeviceProfile, make_profile
from .orders import block_seconds, order_area, value_order
from .skeletons import skeleton_factory
from .strategies import ParallelModel, ProgressiveModel, TeacherOnlyModel
from .pack import PackIndex, pack_index, parse_part, part_name, step_parts
from .reader import PlainReader, ThrottledReader, TokenBucket
from .export import export_pack, model_configs, read_orders, write_orders
from .simulate import (accuracy_curve, curve_area, load_state_accuracy, make_runtime, mean_accuracy,
                       measure_build_s, measure_request_s, predicted_timeline, run_requests, shared_arrivals,
                       time_to_accuracy, time_to_first_answer, unthrottled_runs)

__all__ = ["DeviceProfile", "make_profile", "block_seconds", "order_area", "value_order", "ParallelModel",
           "ProgressiveModel", "TeacherOnlyModel", "skeleton_factory", "PackIndex", "pack_index", "parse_part",
           "part_name", "step_parts", "PlainReader", "ThrottledReader", "TokenBucket", "export_pack", "model_configs",
           "read_orders", "write_orders",
           "accuracy_curve", "curve_area", "load_state_accuracy", "make_runtime", "mean_accuracy",
           "measure_build_s", "measure_request_s", "predicted_timeline", "run_requests", "shared_arrivals",
           "time_to_accuracy", "time_to_first_answer", "unthrottled_runs"]
