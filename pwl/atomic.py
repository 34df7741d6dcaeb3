"""The one way this project writes a file that others read: to `<name>.tmp`, then renamed over the target.

Why: a kill (or a full disk) mid-write must leave either the old file or the new one, never a truncated
file that a later stage trusts; and a write that fails must not leave its `.tmp` behind either."""
import errno
import os
import re
import shutil
from pathlib import Path
from typing import Callable, Union

from .errors import PWLError

# no space, quota, file size limit: as OSError errno, or inside the message of a writer that wraps it (safetensors)
FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
FULL_TEXT = re.compile(r"os error (28|122|27)\b|No space left|Disk quota|File too large")


def atomic_write(path: Path, data: Union[bytes, Callable[[Path], None]]) -> None:
    """Write `data` (bytes, or a function that writes the file at the path it is given) to `path` atomically;
    on any failure the temporary file is removed and the error propagates (a full disk as a PWLError that
    names the file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        if callable(data):
            data(tmp)
        else:
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, Exception) and (getattr(e, "errno", None) in FULL or FULL_TEXT.search(str(e))):
            raise PWLError(f"could not write {path}: {e}", f"free disk space (or raise the quota/file size limit) "
                           f"on {path.parent}, then rerun") from None
        raise


def staging_dir(path: Path) -> Path:
    """An empty folder beside `path` to write its new content into, for `replace_dir` (`*.tmp`: git ignores it;
    one left by a killed run is cleared here)."""
    path = Path(path)
    staging = path.with_name(path.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    return staging


def replace_dir(staging: Path, path: Path) -> None:
    """Put the folder `staging` in `path`'s place, whole: until this call the previous `path` (the last good
    run's) is untouched, so a run that fails or is killed before its end keeps it."""
    path = Path(path)
    old = path.with_name(path.name + ".old.tmp")
    shutil.rmtree(old, ignore_errors=True)
    if path.exists():
        os.replace(path, old)
    os.replace(staging, path)
    shutil.rmtree(old, ignore_errors=True)
