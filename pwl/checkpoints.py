"""Weights on disk as safetensors, with the config needed to rebuild the model in the file's metadata."""
import hashlib
import json
from pathlib import Path

from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file
from torch import nn

from .atomic import atomic_write
from .errors import PWLError


def fingerprint(*parts) -> str:
    """Stable hash of configs (pydantic models, dicts, strings): a resume checkpoint must match it."""
    def plain(p):
        return p.model_dump(mode="json") if hasattr(p, "model_dump") else p
    blob = json.dumps([plain(p) for p in parts], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def save_weights(path: Path, state: dict, meta: dict) -> None:
    """Atomic (pwl.atomic): a kill never leaves a truncated file that a later stage would trust."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in state.items()}  # NCHW, host
    atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata={"pwl": json.dumps(meta)}))


def read_meta(path: Path) -> dict:
    path = Path(path)
    _require(path)
    try:
        with safe_open(str(path), "pt") as f:
            return json.loads((f.metadata() or {})["pwl"])
    except (SafetensorError, KeyError, json.JSONDecodeError, OSError) as e:
        raise _corrupt(path, e) from None


def load_weights(path: Path, module: nn.Module, prefix: str = "") -> None:
    """Load `prefix`-ed tensors into `module`, strictly: missing, extra or misshapen tensors are errors."""
    path = Path(path)
    _require(path)
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, RuntimeError) as e:
        raise _corrupt(path, e) from None
    if prefix:
        state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise PWLError(f"{path} does not fit the model built from params.yaml: {str(e).splitlines()[0]}",
                       "params changed since it was written: run `dvc repro` to retrain") from None


def _require(path: Path) -> None:
    if not path.exists():
        raise PWLError(f"checkpoint {path} is missing", "run `dvc repro` to produce it")


def _corrupt(path: Path, err) -> PWLError:
    return PWLError(f"checkpoint {path} is corrupt or truncated ({err})",
                    "delete it and run `dvc repro -f` on the stage that writes it")
