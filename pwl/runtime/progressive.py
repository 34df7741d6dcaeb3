"""A model that answers from the student at once and turns into the teacher block by block as shards arrive.

Why this shape: a request must never see a half-built block, so every teacher block is read, verified and
loaded into a fresh module off to the side; then one (state, MixedModel) pair is published under a lock.
Requests take that pair under the same lock and compute outside it with modules nobody mutates again.
Skeletons are built on the meta device (no random init, no memory) and filled with `assign=True`.
"""
import copy
import threading
import time
from pathlib import Path
from typing import Callable, Optional

import torch
from torch import nn

from ..errors import PWLError
from ..mixing import Converters, MixedModel
from ..models import BlockNet, build_model, parse_model_config
from ..states import STUDENT, TEACHER, is_order, parse_state
from .reader import ThrottledReader
from .shards import CONVERTERS_FILE, STUDENT_FILE, load_shard, read_manifest, teacher_file

EVENTS = ("launch", "student_ready", "first_answer", "block_swapped", "teacher_complete", "error")


class _Missing(nn.Module):
    """Stands for a part not loaded yet; running it is a bug, so it fails loudly."""

    def forward(self, *args):
        raise RuntimeError("a part that is not loaded yet was run")

    def convert(self, f, boundary, src, dst):
        if src != dst:  # same owner on both sides needs no converter (all-S / all-T states)
            raise RuntimeError("converters are not loaded yet")
        return f


def manifest_factory(manifest: dict) -> Callable[[str], BlockNet]:
    """`build(role)` -> an empty (meta-device) BlockNet skeleton from the manifest's configs."""
    cfg = manifest["configs"]

    def build(role: str) -> BlockNet:
        with torch.device("meta"):  # builders never load weights: those come from the shards
            return build_model(parse_model_config(cfg[role]), in_chans=cfg["in_chans"], num_classes=cfg["num_classes"],
                               img_size=cfg["img_size"])
    return build


def materialize(skeleton: nn.Module, state: dict) -> nn.Module:
    """A fresh copy of `skeleton` holding exactly `state` (strict), in eval mode without gradients."""
    module = copy.deepcopy(skeleton)
    try:
        module.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as e:
        raise PWLError(f"shard tensors do not fit the model skeleton: {str(e).splitlines()[0]}",
                       "the manifest's configs differ from the exported model: export the shards again") from None
    if any(t.is_meta for t in (*module.parameters(), *module.buffers())):
        raise PWLError("the skeleton has tensors that no shard provides (non-persistent buffers?)",
                       "pass a `factory` that builds skeletons on the CPU")
    return module.eval().requires_grad_(False)


def sub_state(tensors: dict, prefix: str) -> dict:
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}


class _Runtime:
    """Shared serving machinery: the published (state, model) pair, predict() and the event timeline."""

    def __init__(self, shard_dir: Path, profile, factory: Optional[Callable[[str], BlockNet]] = None,
                 reader=None, on_event: Optional[Callable[[dict], None]] = None):
        self.dir, self.profile = Path(shard_dir), profile
        self.manifest = read_manifest(self.dir)
        self.num_blocks = self.manifest["num_blocks"]
        self.factory = factory or manifest_factory(self.manifest)
        self.reader = reader or ThrottledReader.from_profile(profile)
        self.on_event = on_event
        self.timeline: list[dict] = []
        self.error: Optional[Exception] = None
        self._lock = threading.Lock()
        self._live: Optional[tuple[str, MixedModel]] = None
        self._t0: Optional[float] = None
        self._first_answer = threading.Event()  # set by the first predict(); the loader waits on it
        self._thread: Optional[threading.Thread] = None

    def _event(self, event: str, state: Optional[str], **extra) -> None:
        with self._lock:
            rec = self._record(event, state, **extra)
        if self.on_event:
            self.on_event(rec)

    def _record(self, event: str, state: Optional[str], **extra) -> dict:
        """Append one event; the caller holds the lock."""
        rec = {"event": event, "t": time.perf_counter() - self._t0, "bytes_read": self.reader.bytes_read,
               "state": state, **extra}
        self.timeline.append(rec)
        return rec

    def _publish(self, state: str, mixed: MixedModel, event: str) -> None:
        """Swap in a fully built model between two requests."""
        with self._lock:
            self._live = (state, mixed)
            rec = self._record(event, state)
        if self.on_event:
            self.on_event(rec)

    def _begin(self) -> None:
        if self._t0 is not None:
            raise PWLError("this runtime was already started", "make a new one per launch")
        self._t0 = time.perf_counter()
        self._event("launch", None)

    def _fail(self, err: Exception) -> None:
        self.error = err
        self._event("error", self.state, message=str(err))

    @property
    def state(self) -> Optional[str]:
        with self._lock:
            return self._live[0] if self._live else None

    @property
    def done(self) -> bool:
        """Nothing more will be loaded (finished, failed, or never loading)."""
        return self._t0 is not None and (self._thread is None or not self._thread.is_alive())

    def wait(self, timeout: Optional[float] = None) -> bool:
        if self._thread is not None:
            self._thread.join(timeout)
        return self.done

    def predict(self, x: torch.Tensor) -> tuple[torch.Tensor, str]:
        """Logits of `x` from the state loaded now, and that state."""
        with self._lock:
            live = self._live
        if live is None:
            raise PWLError("predict() before the model is ready", "call start() first")
        state, mixed = live
        with torch.no_grad():
            logits = mixed(x, state)
        with self._lock:
            first = not self._first_answer.is_set()
            self._first_answer.set()
            rec = self._record("first_answer", state) if first else None
        if rec and self.on_event:
            self.on_event(rec)
        return logits, state

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    def stop(self) -> None:
        pass


FIRST_ANSWER_WAIT_S = 1.0  # longest the teacher loader waits for the first answer before it reads anyway


class ProgressiveModel(_Runtime):
    """PWL at run time: `start()` loads the student and returns; teacher blocks then stream in `order`,
    from the moment the first answer is out (see `_load`).

    order: states from all-S to all-T adding one teacher block per step, or None to serve the student only.
    factory(role) builds an empty BlockNet for 'teacher'/'student' (default: from the manifest's configs).
    A shard failing verification records an 'error' event and stops loading; the last good state keeps serving.
    """

    def __init__(self, shard_dir: Path, profile, order: Optional[list[str]] = None,
                 first_answer_wait_s: float = FIRST_ANSWER_WAIT_S, **kw):
        super().__init__(shard_dir, profile, **kw)
        self.first_answer_wait_s = first_answer_wait_s
        n = self.num_blocks
        if order is not None:
            order = [parse_state(s, n) for s in order]
            if not is_order(order):
                raise PWLError(f"loading order {order} is not valid",
                               f"go from {STUDENT * n} to {TEACHER * n}, adding one teacher block per step")
        self.order = order
        self._stop = threading.Event()

    def start(self) -> "ProgressiveModel":
        self._begin()
        try:
            self.student = materialize(self.factory("student"), load_shard(self.dir, self.manifest, STUDENT_FILE,
                                                                           self.reader))
        except Exception as e:
            self._fail(e)
            raise
        n, missing = self.num_blocks, _Missing()
        placeholder = BlockNet(missing, [missing] * n, missing, self.student.block_widths)
        self._publish(STUDENT * n, MixedModel(placeholder, self.student, missing), "student_ready")
        if self.order is not None:
            self._thread = threading.Thread(target=self._load, name="pwl-loader", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop loading after the block in flight (serving goes on with the state reached)."""
        self._stop.set()
        self.wait()

    def _load(self) -> None:
        # Serve first: on 2 cores, reading and building teacher block 1 beside the first request delays the
        # first answer (GIL, CPU). The loader starts once it is out, or after first_answer_wait_s without one.
        self._first_answer.wait(self.first_answer_wait_s)  # returns at once when the wait is 0
        try:
            self._load_teacher()
        except Exception as e:  # noqa: BLE001  (any failure: keep serving the last good state)
            self._fail(e)

    def _load_teacher(self) -> None:
        n, skel = self.num_blocks, self.factory("teacher")
        with torch.device("meta"):
            conv_skel = Converters(skel.block_widths, self.student.block_widths)
        conv = materialize(conv_skel, load_shard(self.dir, self.manifest, CONVERTERS_FILE, self.reader))
        missing = _Missing()
        embed, blocks, head = missing, [missing] * n, missing
        for prev, state in zip(self.order, self.order[1:]):
            if self._stop.is_set():
                return
            i = next(j for j in range(n) if prev[j] != state[j])
            tensors = load_shard(self.dir, self.manifest, teacher_file(i + 1), self.reader)
            blocks = list(blocks)
            blocks[i] = materialize(skel.blocks[i], sub_state(tensors, f"blocks.{i}."))
            if i == 0:
                embed = materialize(skel.embed, sub_state(tensors, "embed."))
            if i == n - 1:
                head = materialize(skel.head, sub_state(tensors, "head."))
            teacher = BlockNet(embed, blocks, head, skel.block_widths)
            self._publish(state, MixedModel(teacher, self.student, conv), "block_swapped")
        self._event("teacher_complete", self.order[-1])


class TeacherOnlyModel(_Runtime):
    """Baseline: read every teacher shard, build the teacher, only then answer (state all-T)."""

    def start(self) -> "TeacherOnlyModel":
        self._begin()
        n = self.num_blocks
        try:
            tensors = {}
            for i in range(1, n + 1):
                tensors.update(load_shard(self.dir, self.manifest, teacher_file(i), self.reader))
            teacher = materialize(self.factory("teacher"), tensors)
        except Exception as e:
            self._fail(e)
            raise
        missing = _Missing()
        self._publish(TEACHER * n, MixedModel(teacher, BlockNet(missing, [missing] * n, missing,
                                                                teacher.block_widths), missing), "teacher_complete")
        return self
