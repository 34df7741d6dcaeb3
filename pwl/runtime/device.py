"""Storage profiles of the devices a PWL model loads on: how fast weight bytes can arrive.

Figures are the real sequential-read rates of each medium (1 MB = 1e6 bytes). The pipeline's default
models hold only 0.1-2 MB of weights, so a stage may override `read_bandwidth` (e.g. scale it down from
params) with `get_profile(name, read_bandwidth=...)`: overrides are validated like the shipped values.
"""
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import PWLError

MB = 1_000_000


class DeviceProfile(BaseModel):
    """A storage medium: bytes/s of sequential reads, latency to open a file, compute threads, warm-up runs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    read_bandwidth: float = Field(gt=0, description="sequential read rate in bytes/s; must be > 0")
    open_latency_s: float = Field(0.0, ge=0, description="seconds to open one file (seek + metadata)")
    threads: int = Field(1, ge=1, description="compute threads the device has (capped by this machine's cores)")
    warmup_requests: int = Field(0, ge=0, description="untimed forward passes before measuring compute")


PROFILES: dict[str, DeviceProfile] = {
    # Class-10 microSD in a Raspberry Pi 3: its SD bus (SDR25, 4 bit x 50 MHz) caps reads at 25 MB/s and
    # sequential reads measure ~20-22 MB/s; ~1-2 ms per random 4 KiB read (A1 cards: >=1500 IOPS) plus
    # filesystem metadata. 20 MB/s is also a ~160 Mbit/s network link. Quad-core Cortex-A53.
    "sdcard": DeviceProfile(name="sdcard", read_bandwidth=20 * MB, open_latency_s=2e-3, threads=4,
                            warmup_requests=3),
    # eMMC 5.1 (JEDEC JESD84-B51, HS400 bus 400 MB/s) in mid-range phones/SBCs: ~250-300 MB/s sequential
    # reads, ~0.2-0.5 ms per random read. Octa-core phone SoC.
    "emmc": DeviceProfile(name="emmc", read_bandwidth=250 * MB, open_latency_s=5e-4, threads=8, warmup_requests=3),
    # Mid-range NVMe SSD on PCIe 3.0 x4 (bus ~3.9 GB/s; drives rated 2-3.5 GB/s sequential reads),
    # ~50-100 us per random 4 KiB read. Laptop/desktop CPU.
    "nvme": DeviceProfile(name="nvme", read_bandwidth=2000 * MB, open_latency_s=5e-5, threads=8,
                          warmup_requests=3),
}


def get_profile(name: str, **overrides) -> DeviceProfile:
    """A shipped profile, optionally with fields overridden (validated: a zero bandwidth is an error)."""
    if name not in PROFILES:
        raise PWLError(f"unknown device profile {name!r}", f"use one of {sorted(PROFILES)}")
    return make_profile({**PROFILES[name].model_dump(), **overrides})


def make_profile(raw: dict) -> DeviceProfile:
    """Validate a raw profile dict; errors become one PWLError listing every bad field."""
    try:
        return DeviceProfile.model_validate(raw)
    except ValidationError as e:
        bad = "; ".join(f"{'.'.join(map(str, x['loc'])) or 'profile'}: {x['msg']}" for x in e.errors())
        raise PWLError(f"invalid device profile {raw.get('name', '?')!r}: {bad}",
                       "read_bandwidth must be > 0 bytes/s, open_latency_s >= 0, threads >= 1, "
                       "warmup_requests >= 0") from None
