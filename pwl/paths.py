"""Where the pipeline's files live (relative to the repository root); dvc.yaml declares the same paths."""
from pathlib import Path

DATA = Path("data/prepared")
RAW = Path("data/raw")
MODELS = Path("models")
CHECKPOINTS = Path("checkpoints")
REPORTS = Path("reports")
METRICS = REPORTS / "metrics"
TRAINING = REPORTS / "training"


def weights(arch: str, role: str) -> Path:
    """role: teacher | student (scratch baseline) | pwl (distilled student + converters)."""
    return MODELS / arch / f"{role}.safetensors"


def metrics(arch: str, role: str) -> Path:
    return METRICS / arch / f"{role}.json"


def resume_checkpoint(arch: str, role: str) -> Path:
    return CHECKPOINTS / arch / f"{role}.pt"


def live_dir(arch: str, role: str) -> Path:
    return TRAINING / arch / role


def states_table(arch: str) -> Path:
    return METRICS / arch / "states.csv"


def shards(arch: str) -> Path:
    return MODELS / arch / "shards"


def loadsim_dir(arch: str, device: str) -> Path:
    return REPORTS / "loadsim" / arch / device
