"""What a result was computed with: versions, threads, machine, git revision."""
import os
import platform
import subprocess
import sys

import torch


def environment() -> dict:
    def version(mod):
        try:
            return __import__(mod).__version__
        except Exception:
            return None
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             timeout=5).stdout.strip() or None
    except Exception:
        rev = None
    return {"python": sys.version.split()[0], "platform": platform.platform(), "machine": platform.machine(),
            "processor": platform.processor(), "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "device": "cuda" if torch.cuda.is_available() else "cpu",
            **{m: version(m) for m in ("torch", "torchvision", "timm", "safetensors", "dvc", "dvclive", "numpy",
                                       "pandas", "matplotlib", "pydantic")},
            "git_rev": rev}
