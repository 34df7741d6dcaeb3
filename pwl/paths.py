"""Where the pipeline's files live (relative to the repository root); dvc.yaml declares the same paths.

Models are per arch and training seed (`seeds`: replicas); everything a run reports lives under
reports/<name>/ (`name`: one folder per profile or named variant), so that several profiles' results sit side
by side in git, indexed by reports/README.md. Data and models are shared: DVC's cache switches them."""
from pathlib import Path

DATA = Path("data/prepared")
RAW = Path("data/raw")
MODELS = Path("models")
CHECKPOINTS = Path("checkpoints")
REPORTS = Path("reports")
INDEX = REPORTS / "README.md"


def report_dir(name: str) -> Path:
    """One run's report: README.md, figures/, tables/, summary.json, and the stages' metrics and logs."""
    return REPORTS / name


def replica(seed) -> str:
    return f"s{seed}"


def weights(arch: str, role: str, seed) -> Path:
    """role: teacher | student (scratch baseline) | kd | pwl (distilled student + converters)."""
    return MODELS / arch / replica(seed) / f"{role}.safetensors"


def metrics(name: str, arch: str, role: str, seed) -> Path:
    """A training or evaluation stage's metrics for one replica."""
    return report_dir(name) / "metrics" / arch / replica(seed) / f"{role}.json"


def arch_metrics(name: str, arch: str, what: str) -> Path:
    """Per-arch files that come from the exported replica only (export.json, state_bytes.csv)."""
    return report_dir(name) / "metrics" / arch / what


def prepare_metrics(name: str) -> Path:
    return report_dir(name) / "metrics" / "prepare.json"


def resume_checkpoint(arch: str, role: str, seed) -> Path:
    return CHECKPOINTS / arch / replica(seed) / f"{role}.pt"


def live_dir(name: str, arch: str, role: str, seed) -> Path:
    return report_dir(name) / "training" / arch / replica(seed) / role


def states_table(name: str, arch: str, seed) -> Path:
    return report_dir(name) / "metrics" / arch / replica(seed) / "states.csv"


def shards(arch: str) -> Path:
    return MODELS / arch / "shards"


def loadsim_dir(name: str, arch: str, device: str) -> Path:
    return report_dir(name) / "loadsim" / arch / device
