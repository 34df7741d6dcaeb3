"""Where the pipeline's files live (relative to the repository root); dvc.yaml declares the same paths.

Models are per arch and training replica (`seeds`). The stages' metrics, logs and load simulations live under
reports/<profile>/, every replica in its own s<seed>/ folder; the report stage reads them and writes its README,
figures and tables to reports/<name>/ (`name` = the profile, or a named variant such as <profile>-seeds, which
then reuses every replica already trained). So several profiles' results sit side by side in git, indexed by
reports/README.md. Data and models are shared between profiles: DVC's cache switches them."""
from pathlib import Path

DATA = Path("data/prepared")
RAW = Path("data/raw")
MODELS = Path("models")
CHECKPOINTS = Path("checkpoints")
REPORTS = Path("reports")
INDEX = REPORTS / "README.md"
PARAMS_CHECKED = REPORTS / "params_checked.txt"  # check_params' output: every stage depends on it


def report_dir(folder: str) -> Path:
    """reports/<profile>/ (the stages' files) or reports/<name>/ (a report: README.md, figures/, tables/,
    summary.json); the same folder when name = profile."""
    return REPORTS / folder


def replica(seed) -> str:
    return f"s{seed}"


def weights(arch: str, role: str, seed) -> Path:
    """role: teacher | student (scratch baseline) | kd | pwl (distilled student + converters)."""
    return MODELS / arch / replica(seed) / f"{role}.safetensors"


def metrics(profile: str, arch: str, role: str, seed) -> Path:
    """A training or evaluation stage's metrics for one replica."""
    return report_dir(profile) / "metrics" / arch / replica(seed) / f"{role}.json"


def arch_metrics(profile: str, arch: str, what: str) -> Path:
    """Per-arch files that come from the exported replica only (export.json, state_bytes.csv)."""
    return report_dir(profile) / "metrics" / arch / what


def prepare_metrics(profile: str) -> Path:
    return report_dir(profile) / "metrics" / "prepare.json"


def resume_checkpoint(arch: str, role: str, seed) -> Path:
    return CHECKPOINTS / arch / replica(seed) / f"{role}.pt"


def live_dir(profile: str, arch: str, role: str, seed) -> Path:
    return report_dir(profile) / "training" / arch / replica(seed) / role


def states_table(profile: str, arch: str, seed) -> Path:
    return report_dir(profile) / "metrics" / arch / replica(seed) / "states.csv"


def shards(arch: str) -> Path:
    return MODELS / arch / "shards"


def loadsim_dir(profile: str, arch: str, device: str) -> Path:
    return report_dir(profile) / "loadsim" / arch / device
