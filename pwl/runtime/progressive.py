"""A model that answers from the student at once and turns into the teacher block by block as shards arrive.

Why this shape: a request must never see a half-built block, so every teacher block is read, verified and
loaded into a fresh module off to the side; then one (state, MixedModel) pair is published under a lock.
Requests take that pair under the same lock and compute outside it with modules nobody mutates again.
Skeletons are built on the meta device (no random init, no memory) and filled with `assign=True`.
Blocks come in a fixed order (`ProgressiveModel`) or all at once, each swapped in as it arrives
(`ParallelModel`); a shard that fails is recorded and the best state the other shards can assemble is served.
"""
import copy
import math
import queue
import threading
import time
from pathlib import Path
from typing import Callable, Optional

import torch
from torch import nn

from ..errors import PWLError
from ..mixing import Converters, MixedModel
from ..models import BlockNet, build_model, parse_model_config
from ..states import STUDENT, TEACHER, all_states, changed_block, is_order, parse_state
from .reader import ThrottledReader
from .shards import CONVERTERS_FILE, STUDENT_FILE, load_shard, read_manifest, teacher_file

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


def accuracy_table(raw, num_blocks: int, source: str) -> Optional[dict[str, float]]:
    """Validate a state -> validation accuracy table (every one of the 2^N states, finite numbers); None stays None."""
    if raw is None:
        return None
    states = all_states(num_blocks)
    try:
        table = {s: float(raw[s]) for s in states}
    except (KeyError, TypeError, ValueError) as e:
        raise PWLError(f"{source}: the validation accuracy table lacks or garbles state {e}",
                       f"give a number for every one of the {len(states)} states (export the shards again)") from None
    if not all(math.isfinite(v) for v in table.values()):
        raise PWLError(f"{source}: the validation accuracy table has non-finite values", "export the shards again")
    return table


class ProgressiveModel(_Runtime):
    """PWL at run time: `start()` loads the student and returns; teacher blocks then stream in `order`,
    from the moment the first answer is out (see `_load`).

    order: states from all-S to all-T adding one teacher block per step, or None to serve the student only.
    factory(role) builds an empty BlockNet for 'teacher'/'student' (default: from the manifest's configs).
    accuracy: state -> validation accuracy (default: the manifest's `val_accuracy`, written by export).

    A shard that fails (missing, truncated, checksum mismatch, unloadable) records a 'shard_failed' event and
    loading goes on with the other shards; from then on the model serves the best state the arrived shards can
    assemble: the highest validation accuracy among states whose teacher blocks all arrived (all-S and all-T
    only when the converters failed). Without an accuracy table it keeps the last good state of the order.
    Loading ends with 'teacher_complete' (all-T reached) or 'loading_incomplete' (the state it settled on).
    """

    def __init__(self, shard_dir: Path, profile, order: Optional[list[str]] = None,
                 first_answer_wait_s: float = FIRST_ANSWER_WAIT_S, accuracy: Optional[dict] = None, **kw):
        super().__init__(shard_dir, profile, **kw)
        self.first_answer_wait_s = first_answer_wait_s
        n = self.num_blocks
        if order is not None:
            order = [parse_state(s, n) for s in order]
            if not is_order(order):
                raise PWLError(f"loading order {order} is not valid",
                               f"go from {STUDENT * n} to {TEACHER * n}, adding one teacher block per step")
        self.order = order
        if accuracy is None:
            self.accuracy = accuracy_table(self.manifest.get("val_accuracy"), n, f"{self.dir / 'manifest.json'}")
        else:
            self.accuracy = accuracy_table(accuracy, n, "accuracy")
        self.failed: list[str] = []  # files that failed to load, in the order they failed
        self._stop = threading.Event()

    @property
    def loads_teacher(self) -> bool:
        return self.order is not None

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
        if self.loads_teacher:
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
            self._skel = self.factory("teacher")
            with torch.device("meta"):
                self._conv_skel = Converters(self._skel.block_widths, self.student.block_widths)
            missing = _Missing()
            self._embed, self._blocks, self._head, self._conv = missing, [missing] * self.num_blocks, missing, None
            self._arrived: set[int] = set()
            self._load_teacher()
        except Exception as e:  # noqa: BLE001  (any other failure: keep serving the last good state)
            self._fail(e)

    def _load_teacher(self) -> None:
        self._add(CONVERTERS_FILE, self._fetch(CONVERTERS_FILE))
        for prev, state in zip(self.order, self.order[1:]):
            if self._stop.is_set():
                return
            name = teacher_file(changed_block(prev, state) + 1)
            arrived = self._add(name, self._fetch(name))
            if arrived and not self.failed:
                self._publish(state, self._assembled(), "block_swapped")
            elif self.failed:
                self._settle_best()
        self._finish()

    # -- pieces shared by the ordered and the out-of-order loaders ---------------------------------------------

    def _fetch(self, name: str) -> Optional[dict]:
        """Read and verify one file; a failure is recorded (loading goes on) and gives None."""
        try:
            return load_shard(self.dir, self.manifest, name, self.reader)
        except PWLError as e:
            self._shard_failed(name, e)
            return None

    def _add(self, name: str, tensors: Optional[dict]) -> bool:
        """Build the modules of an arrived file off to the side; False if it failed (recorded)."""
        if tensors is None:
            return False
        try:
            if name == CONVERTERS_FILE:
                self._conv = materialize(self._conv_skel, tensors)
                return True
            i = self.manifest["files"][name]["block"] - 1
            blocks = list(self._blocks)
            blocks[i] = materialize(self._skel.blocks[i], sub_state(tensors, f"blocks.{i}."))
            embed = materialize(self._skel.embed, sub_state(tensors, "embed.")) if i == 0 else self._embed
            last = i == self.num_blocks - 1
            head = materialize(self._skel.head, sub_state(tensors, "head.")) if last else self._head
        except PWLError as e:
            self._shard_failed(name, e)
            return False
        self._embed, self._blocks, self._head = embed, blocks, head
        self._arrived.add(i)
        return True

    def _assembled(self) -> MixedModel:
        teacher = BlockNet(self._embed, self._blocks, self._head, self._skel.block_widths)
        return MixedModel(teacher, self.student, self._conv if self._conv is not None else _Missing())

    def _shard_failed(self, name: str, err: Exception) -> None:
        self.failed.append(name)
        if self.error is None:
            self.error = err
        self._event("shard_failed", self.state, file=name, message=str(err))

    def best_available(self) -> str:
        """The state to serve once a shard has failed: best validation accuracy among the states the arrived
        shards can assemble (ties: the state served now, then more teacher blocks)."""
        current, n = self.state, self.num_blocks
        if self.accuracy is None:
            return current
        candidates = [s for s in all_states(n)
                      if all(c == STUDENT or j in self._arrived for j, c in enumerate(s))
                      and (self._conv is not None or len(set(s)) == 1)]
        return max(candidates, key=lambda s: (self.accuracy[s], s == current, s.count(TEACHER)))

    def _settle_best(self) -> None:
        best = self.best_available()
        if best != self.state:
            self._publish(best, self._assembled(), "block_swapped")

    def _finish(self) -> None:
        state = self.state
        self._event("teacher_complete" if state == TEACHER * self.num_blocks else "loading_incomplete", state)


PARALLEL_CHUNK = 16 * 1024


class ParallelModel(ProgressiveModel):
    """Out-of-order loading: once the first answer is out, every teacher shard and the converters are requested
    at once and share the device's bandwidth (one token bucket); each block is swapped in as soon as it has
    arrived and been built, so the state served is whatever subset of teacher blocks has arrived. Blocks are
    built one at a time in arrival order ('shard_arrived' then 'block_swapped' per block); blocks that arrive
    before the converters wait for them. Only an order-agnostic model is good in every such state."""

    def __init__(self, shard_dir: Path, profile, **kw):
        # finer chunks than one file at a time needs, so that files read together share the bandwidth closely
        # (processor sharing, as `simulate.shared_arrivals` models it) instead of 64 KiB turn by turn
        if kw.get("reader") is None:
            kw["reader"] = ThrottledReader.from_profile(profile, chunk_size=PARALLEL_CHUNK)
        super().__init__(shard_dir, profile, None, **kw)

    @property
    def loads_teacher(self) -> bool:
        return True

    def _load_teacher(self) -> None:
        n = self.num_blocks
        names = [CONVERTERS_FILE, *(teacher_file(i) for i in range(1, n + 1))]
        arrivals: queue.Queue = queue.Queue()

        def fetch(name):
            try:
                arrivals.put((name, load_shard(self.dir, self.manifest, name, self.reader), None))
            except Exception as e:  # noqa: BLE001  (handed to the loader thread)
                arrivals.put((name, None, e))

        for name in names:
            threading.Thread(target=fetch, args=(name,), name=f"pwl-read-{name}", daemon=True).start()
        waiting: list[int] = []  # blocks built before the converters arrived, in arrival order
        for _ in names:
            while True:
                if self._stop.is_set():
                    return
                try:
                    name, tensors, err = arrivals.get(timeout=0.05)
                    break
                except queue.Empty:
                    continue
            if err is not None:
                if not isinstance(err, PWLError):
                    raise err
                self._shard_failed(name, err)
                self._settle_best()
                continue
            self._event("shard_arrived", self.state, file=name)
            if not self._add(name, tensors):
                self._settle_best()
                continue
            if name != CONVERTERS_FILE:
                waiting.append(self.manifest["files"][name]["block"] - 1)
            if self.failed:
                self._settle_best()
            elif self._conv is not None:
                for i in waiting:
                    state = self.state
                    self._publish(state[:i] + TEACHER + state[i + 1:], self._assembled(), "block_swapped")
                waiting = []
        self._finish()


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
