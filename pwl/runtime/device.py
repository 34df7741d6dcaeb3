"""Storage profiles of the devices a PWL model loads on: how fast weight bytes can arrive.

The devices themselves are params (`loadsim.devices` in conf/config.yaml: bandwidth, latency per file,
threads, warm-up runs, each with the real medium it stands for). Their schema lives in pwl.config with the
other params schemas: every stage validates params, and a training stage must not import (and so depend on)
the runtime. The runtime takes it from here.
"""
from ..config import DeviceProfile, make_profile  # noqa: F401
