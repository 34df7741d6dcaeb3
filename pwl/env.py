"""What a result was computed with: versions, threads, machine, git revision.

Float results can be bit-identical only on the same kind of CPU kernels and the same thread count: torch picks
its vectorised kernels by `torch.backends.cpu.get_cpu_capability()` (AVX2, AVX512, ...), oneDNN by the exact
instruction sets (`cpu_isa`), and reductions are split over threads; each changes the order of float
additions. So every metrics file records `machine()`, and a resume checkpoint written under another
`machine()` is not mixed into a run (`resume_mismatch`)."""
import os
import platform
import subprocess
import sys
from functools import lru_cache

import torch


@lru_cache(maxsize=1)
def cpu_model() -> str:
    """The CPU's marketing name ('model name' in /proc/cpuinfo), or what platform knows elsewhere."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


@lru_cache(maxsize=1)
def cpu_isa() -> str:
    """The vector instruction sets the CPU offers (AVX/AVX-512/AMX/FMA flags of /proc/cpuinfo): oneDNN picks its
    kernels by these, and `get_cpu_capability()` ('AVX512') does not tell e.g. AVX-512 with or without AMX apart."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = line.split(":", 1)[1].split()
                    return " ".join(sorted(fl for fl in flags if fl.startswith(("avx", "amx", "fma", "f16c"))))
    except OSError:
        pass
    return "unknown"


def gpu_name() -> str | None:
    return torch.cuda.get_device_name() if torch.cuda.is_available() else None


def machine() -> dict:
    """What decides whether two runs give bit-identical floats: threads, CPU kernels, GPU."""
    return {"threads": torch.get_num_threads(), "cpu_model": cpu_model(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(), "cpu_isa": cpu_isa(), "gpu": gpu_name()}


RESUME_KEYS = ("threads", "cpu_capability", "cpu_isa", "gpu")  # a CPU's name may differ while its kernels do not


def resume_mismatch(saved: dict | None) -> str | None:
    """Why a checkpoint written under `saved` (its `machine()`) must not be resumed here, or None if it may."""
    if not saved:
        return "it records no thread count or CPU capability (written by an older version)"
    now = machine()
    diff = [f"{k} {saved.get(k)!r} there, {now[k]!r} here" for k in RESUME_KEYS
            if k != "cpu_isa" and saved.get(k) != now[k]]
    if saved.get("cpu_isa") != now["cpu_isa"]:
        there, here = set(str(saved.get("cpu_isa")).split()), set(now["cpu_isa"].split())
        diff.append(f"cpu_isa: only there {sorted(there - here)}, only here {sorted(here - there)}")
    if diff:
        return "it was written on another setup (" + "; ".join(diff) + "): mixing would change the results"
    return None


def environment() -> dict:
    def version(mod):
        try:
            return __import__(mod).__version__
        except Exception:
            return None
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             timeout=5).stdout.strip() or None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "pwl", "stages",
                                "conf", "dvc.yaml"], capture_output=True, text=True, timeout=5).stdout.strip()
        rev = f"{rev}+" if rev and dirty else rev
    except Exception:
        rev = None
    return {"python": sys.version.split()[0], "platform": platform.platform(), "machine": platform.machine(),
            "processor": platform.processor(), "cpu_model": cpu_model(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(), "cpu_isa": cpu_isa(), "gpu": gpu_name(),
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "device": "cuda" if torch.cuda.is_available() else "cpu",
            **{m: version(m) for m in ("torch", "torchvision", "timm", "safetensors", "dvc", "dvclive", "numpy",
                                       "pandas", "matplotlib", "pydantic")},
            "git_rev": rev}
