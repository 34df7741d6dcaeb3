"""A model that answers from the student at once and turns into the teacher block by block as bytes arrive.

Everything comes from one file, the pack (pwl.runtime.pack), in requests through a reader (one latency each):
the first request reads the header and the student and serves; nothing else is needed. Why this shape:
a request must never see a half-built block, so every teacher block is read, verified and loaded into its
own module off to the side; then one (state, MixedModel) pair is published under a lock. Requests take that
pair under the same lock and compute outside it with modules nobody mutates again. Skeletons are built on
the meta device (no random init, no memory) and filled in place with `assign=True`, each part exactly once.
Reading overlaps building: a reader thread requests step k+1 while the loader builds step k. Building and
serving take turns on the interpreter (pwl.runtime.turns), so a request waits for at most one loader turn. Blocks come in
a fixed order (`ProgressiveModel`) or all at once, each swapped in as it arrives (`ParallelModel`); a part
that fails is recorded and the best state the other parts can assemble is served.
"""
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
from ..states import STUDENT, TEACHER, all_states, is_order, parse_state
from .pack import (FIX, STUDENT_PART, PackIndex, block_parts, converter_part, needed_converters, pack_path, parse_part, read_index,
                   step_parts, teacher_part)
from .reader import ThrottledReader
from .turns import TurnLock, timed_turn

OVERLAP_MIN_S = 0.005  # the first request's weights take at least this long to arrive: build the skeleton meanwhile


def overlaps_first_read(weight_bytes: float, bandwidth: float) -> bool:
    """Are the skeletons built while the first request's weights arrive? Only where that takes long enough to
    hide them: on fast storage the two threads would just contend for one interpreter (+0.6 ms on `nvme`)."""
    return weight_bytes / bandwidth >= OVERLAP_MIN_S


class _Missing(nn.Module):
    """Stands for a part not loaded yet; running it is a bug, so it fails loudly."""

    def forward(self, *args):
        raise RuntimeError("a part that is not loaded yet was run")

    def convert(self, f, boundary, src, dst):
        if src != dst:  # same owner on both sides needs no converter (all-S / all-T states)
            raise RuntimeError("converters are not loaded yet")
        return f


class _ConverterSet:
    """A frozen view of the converters loaded so far (the others are _Missing), used as MixedModel.converters."""

    def __init__(self, enc: list, dec: list):
        self.enc, self.dec = enc, dec

    convert = Converters.convert


def skeleton_factory(meta: dict) -> Callable[[str], BlockNet]:
    """`build(role)` -> an empty (meta-device) BlockNet skeleton from the `configs` of a pack header's `meta`."""
    cfg = meta["configs"]

    def build(role: str) -> BlockNet:
        with torch.device("meta"):  # builders never load weights: those come from the pack
            return build_model(parse_model_config(cfg[role]), in_chans=cfg["in_chans"], num_classes=cfg["num_classes"],
                               img_size=cfg["img_size"])
    return build


def fill(skeleton: nn.Module, state: dict) -> nn.Module:
    """Put the tensors of `state` into a meta-device `skeleton` in place (strict: the same names and shapes),
    without copying them; eval mode, no gradients. Why not `load_state_dict(assign=True)`: it walks every
    module through hooks and checks, most of a millisecond per student on the path to the first answer."""
    slots = {}
    for prefix, module in skeleton.named_modules():
        dot = f"{prefix}." if prefix else ""
        slots.update({dot + k: (module._parameters, k) for k, v in module._parameters.items() if v is not None})
        slots.update({dot + k: (module._buffers, k) for k, v in module._buffers.items()
                      if v is not None and k not in module._non_persistent_buffers_set})
    bad = sorted(set(slots) ^ set(state)) + [k for k, (d, n) in slots.items() if k in state and d[n].shape != state[k].shape]
    if bad:
        raise PWLError(f"pack tensors do not fit the model skeleton: {bad[:4]} missing, unexpected or of another shape",
                       "the header's configs differ from the exported model: " + FIX)
    for key, (store, name) in slots.items():
        t = state[key]
        store[name] = nn.Parameter(t, requires_grad=False) if isinstance(store[name], nn.Parameter) else t
    if any(t.is_meta for t in (*skeleton.parameters(), *skeleton.buffers())):
        raise PWLError("the skeleton has tensors that no part provides (non-persistent buffers?)",
                       "pass a `factory` that builds skeletons on the CPU")
    return skeleton.eval()


def sub_state(tensors: dict, prefix: str) -> dict:
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}


class _Runtime:
    """Shared serving machinery: the published (state, model) pair, predict() and the event timeline.
    Constructing one reads nothing: every byte is read after `start()`, inside the clock."""

    def __init__(self, shard_dir: Path, profile, factory: Optional[Callable[[str], BlockNet]] = None,
                 reader=None, on_event: Optional[Callable[[dict], None]] = None):
        self.dir, self.profile = Path(shard_dir), profile
        self.path = pack_path(self.dir)
        self.factory = factory
        self.reader = reader or ThrottledReader.from_profile(profile)
        self.on_event = on_event
        self.timeline: list[dict] = []
        self.error: Optional[Exception] = None
        self.index: Optional[PackIndex] = None
        self._lock = threading.Lock()
        self._live: Optional[tuple[str, MixedModel]] = None
        self._answered: Optional[str] = None  # state of the last answer returned
        self._t0: Optional[float] = None
        self._first_answer = threading.Event()  # set by the first predict(); the loader waits on it
        self._thread: Optional[threading.Thread] = None
        self._turns = TurnLock()  # a forward and the loader's building take turns (pwl.runtime.turns)
        self.loader_turns: list[float] = []  # how long each of the loader's turns held it (s)

    @property
    def num_blocks(self) -> int:
        return self.index.num_blocks

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

    def _publish(self, state: str, mixed: MixedModel, event: str, **extra) -> None:
        """Swap in a fully built model between two requests."""
        with self._lock:
            self._live = (state, mixed)
            rec = self._record(event, state, **extra)
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

    def _read_first(self, parts: Callable[[PackIndex], list[str]], role: str,
                    spare: Optional[Callable[[BlockNet], None]] = None) -> tuple[dict, dict, BlockNet]:
        """The first request: the header, then `parts(index)` (the student, or the teacher's blocks without the
        converters between them), one latency in all. The `role`'s skeleton needs only the header's configs, so
        it is built while the weights are still arriving (a reader thread fetches them); if they are still
        arriving after that, `spare(skeleton)` uses the wait too (PWL: the teacher's skeleton). Returns
        ({part: (bytes, file offset)}, costs: read_s = the request with the skeleton built during it (or, on
        storage too fast to hide it, right after it), skeleton_s, the skeleton); sets self.index."""
        t = time.perf_counter()
        chunks, errors = {}, []
        try:
            with self.reader.open(self.path) as f:
                self.index = read_index(f)
                names = parts(self.index)

                def fetch():
                    try:
                        for p in names:
                            chunks[p] = (f.read_at(self.index.parts[p][0], self.index.part_bytes(p)),
                                         self.index.parts[p][0])
                    except BaseException as e:  # noqa: BLE001  (raised on the caller's thread below)
                        errors.append(e)
                if self.factory is None:
                    self.factory = skeleton_factory(self.index.meta)
                overlap = overlaps_first_read(sum(self.index.part_bytes(p) for p in names), self.reader.bucket.rate)
                reading = threading.Thread(target=fetch, name="pwl-first-read", daemon=True)
                if overlap:
                    reading.start()
                else:
                    fetch()
                try:
                    ts = time.perf_counter()
                    skeleton = self.factory(role)
                    skeleton_s = time.perf_counter() - ts
                    if overlap and spare is not None and reading.is_alive():
                        spare(skeleton)
                finally:
                    if overlap:
                        reading.join()
                if errors:
                    raise errors[0]
        except OSError as e:
            raise PWLError(f"cannot read {self.path} ({e})", FIX) from None
        cost = {"read_s": time.perf_counter() - t, "skeleton_s": skeleton_s}
        self._event("read", None, file="header+" + "+".join(names), **cost)
        return chunks, cost, skeleton

    def _verify(self, chunks: dict, cost: dict) -> None:
        """Check the parts in `chunks` ({part: (bytes, file offset)}) against their sha256; adds the seconds to
        `cost`."""
        t = time.perf_counter()
        for name, (buf, start) in chunks.items():
            self.index.verify(name, buf, start)
        cost["verify_s"] = time.perf_counter() - t

    def _tensors(self, chunks: dict, cost: dict) -> dict:
        """The tensors of the (verified) parts in `chunks`; adds the seconds to `cost`."""
        t = time.perf_counter()
        out = {}
        for name, (buf, start) in chunks.items():
            out.update(self.index.tensors_of(name, buf, start))
        cost["deserialize_s"] = time.perf_counter() - t
        return out

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
        """Logits of `x` from the state loaded now, and that state. The first answer and every answer from a
        new state are events ('first_answer', 'state_answered'): what a user sees, one forward after a swap."""
        with self._turns:  # never beside the loader's building: at most one of its turns before this one
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
            new = state != self._answered
            self._answered = state
            rec = self._record("first_answer" if first else "state_answered", state) if new else None
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
    """PWL at run time: `start()` reads the header and the student in one request, serves, and returns;
    teacher blocks then stream in `order` from the moment the first answer is out (see `_load`), each step
    reading only its block and the converters the new state runs (one request per step).

    order: states from all-S to all-T adding one teacher block per step, or None to serve the student only.
    factory(role) builds an empty BlockNet for 'teacher'/'student' (default: from the pack header's configs).
    accuracy: state -> validation accuracy (default: the pack header's `val_accuracy`, written by export).

    A step that fails (truncated, checksum mismatch, unreadable, unloadable) records a 'shard_failed' event and
    loading goes on with the other steps; from then on the model serves the best state the arrived parts can
    assemble: the highest validation accuracy among states whose teacher blocks and converters all arrived.
    Without an accuracy table it keeps the last good state of the order. Loading ends with 'teacher_complete'
    (all-T reached) or 'loading_incomplete' (the state it settled on).
    """

    def __init__(self, shard_dir: Path, profile, order: Optional[list[str]] = None,
                 first_answer_wait_s: float = FIRST_ANSWER_WAIT_S, accuracy: Optional[dict] = None, **kw):
        super().__init__(shard_dir, profile, **kw)
        self.first_answer_wait_s = first_answer_wait_s
        if order is not None:
            n = len(order[0]) if order else 0
            order = [parse_state(s, n) for s in order]
            if not is_order(order):
                raise PWLError(f"loading order {order} is not valid",
                               f"go from {STUDENT * n} to {TEACHER * n}, adding one teacher block per step")
        self.order = order
        self._accuracy_arg = accuracy
        self.accuracy: Optional[dict] = None
        self.failed: list[str] = []  # parts that failed to load, in the order they failed
        self._stop = threading.Event()
        self._ready = threading.Event()  # the student is served (or failed): the loader may wait for an answer
        self._skel: Optional[BlockNet] = None  # the teacher's skeleton (meta), and the converters' beside it
        self._conv_skel: Optional[Converters] = None
        self._skel_s = 0.0  # seconds it took, wherever it was built

    @property
    def loads_teacher(self) -> bool:
        return self.order is not None

    def start(self) -> "ProgressiveModel":
        self._begin()
        if self.loads_teacher:  # started now, so that starting a thread overlaps the first request's latency
            self._thread = threading.Thread(target=self._load, name="pwl-loader", daemon=True)
            self._thread.start()
        try:
            chunks, cost, skeleton = self._read_first(lambda index: [STUDENT_PART], "student",
                                                      self._teacher_skeleton if self.loads_teacher else None)
            n = self.num_blocks
            if self.order is not None and len(self.order[0]) != n:
                raise PWLError(f"loading order {self.order[:2]}... has states of {len(self.order[0])} blocks, the "
                               f"model has {n}", f"give states of {n} letters")
            raw = self._accuracy_arg if self._accuracy_arg is not None else self.index.meta.get("val_accuracy")
            self.accuracy = accuracy_table(raw, n, "accuracy" if self._accuracy_arg is not None else str(self.path))
            self._verify(chunks, cost)
            tensors = self._tensors(chunks, cost)
            t = time.perf_counter()
            self.student = fill(skeleton, sub_state(tensors, "student."))
            cost["build_s"] = time.perf_counter() - t
        except Exception as e:
            self._fail(e)
            self._stop.set()
            self._ready.set()
            raise
        missing = _Missing()
        placeholder = BlockNet(missing, [missing] * n, missing, self.student.block_widths)
        self._publish(STUDENT * n, MixedModel(placeholder, self.student, missing), "student_ready", **cost)
        self._ready.set()
        return self

    def stop(self) -> None:
        """Stop loading after the block in flight (serving goes on with the state reached)."""
        self._stop.set()
        self.wait()

    def _teacher_skeleton(self, student: BlockNet) -> None:
        t = time.perf_counter()
        self._skel = self.factory("teacher")
        with torch.device("meta"):
            self._conv_skel = Converters(self._skel.block_widths, student.block_widths)
        self._skel_s = time.perf_counter() - t

    def _load(self) -> None:
        # Serve first: on 2 cores, reading and building teacher block 1 beside the first request delays the
        # first answer (GIL, CPU). The loader starts once it is out, or first_answer_wait_s after the student
        # is ready without one.
        self._ready.wait()
        if self._stop.is_set():  # the student failed: start() raised
            return
        self._first_answer.wait(self.first_answer_wait_s)  # returns at once when the wait is 0
        try:
            prebuilt = self._skel is not None  # built while the student's bytes arrived (slow storage)
            if not prebuilt:  # one turn, before any read: no reader thread takes the interpreter meanwhile
                with self._loader_turn():
                    self._teacher_skeleton(self.student)
            self._event("skeleton_built", self.state, skeleton_s=self._skel_s, prebuilt=prebuilt)
            missing = _Missing()
            self._embed, self._blocks, self._head = missing, [missing] * self.num_blocks, missing
            self._arrived: set[int] = set()  # teacher blocks (0-based)
            self._conv_in: set[str] = set()  # converter parts loaded
            arrivals: queue.Queue = queue.Queue()
            self._start_reads(arrivals)
            self._build(arrivals)
        except Exception as e:  # noqa: BLE001  (any other failure: keep serving the last good state)
            self._fail(e)

    # -- reading: one request per step, on reader threads, verified there -----------------------------------

    def _plan(self) -> list[list[str]]:
        """The parts each step reads (in the order of `self.order`) while no step has failed: the new block and
        the converters the new state runs."""
        return [step_parts(a, b, self.index.parts) for a, b in zip(self.order, self.order[1:])]

    def _whole_block(self, parts: list[str]) -> list[str]:
        """The block of a step with every converter stored beside it: after a failure the states served are no
        longer those of the order, and any of its converters may be needed."""
        block = next(i for kind, i in map(parse_part, parts) if kind == "teacher")
        return [p for p in block_parts(block, self.num_blocks) if p in self.index.parts]

    def _start_reads(self, arrivals: queue.Queue) -> None:
        """One reader thread reads and verifies the steps back to back (it never waits for the builder)."""
        def run():
            failed = False
            for parts in self._plan():
                if self._stop.is_set():
                    return
                item = self._read_parts(self._whole_block(parts) if failed else parts)
                failed = failed or item[-1] is not None
                arrivals.put(item)
        threading.Thread(target=run, name="pwl-reader", daemon=True).start()

    def _read_parts(self, parts: list[str]) -> tuple:
        """One request for `parts` (contiguous in the pack), verified: (parts, bytes, their start, costs, error)."""
        t = time.perf_counter()
        label = "+".join(parts)
        self._event("read_start", self.state, file=label)
        try:
            lo, hi = self.index.span(parts)
            with self.reader.open(self.path) as f:
                buf = f.read_at(lo, hi - lo)
            cost = {"read_s": time.perf_counter() - t}
            self._event("read", self.state, file=label, read_s=cost["read_s"])
            self._verify({p: (buf, lo) for p in parts}, cost)
        except (OSError, PWLError) as e:
            err = e if isinstance(e, PWLError) else PWLError(f"cannot read {label} from {self.path} ({e})", FIX)
            return parts, None, 0, None, err
        return parts, buf, lo, cost, None

    def _next(self, arrivals: queue.Queue):
        """The next arrival, or None once stopped."""
        while not self._stop.is_set():
            try:
                return arrivals.get(timeout=0.05)
            except queue.Empty:
                continue
        return None

    # -- building: on the loader thread, in arrival order, one turn per step ------------------------------------

    def _loader_turn(self):
        return timed_turn(self._turns, self.loader_turns)

    def _build(self, arrivals: queue.Queue) -> None:
        """Each arrival in turn: built, then swapped in (the next state), or, once a part failed, the best state
        the arrived parts assemble."""
        for step in range(self._steps()):
            item = self._next(arrivals)
            if item is None:
                return
            with self._loader_turn():
                cost = self._add(*item)
                if cost is not None and not self.failed:
                    self._publish(self._state_after(step, item[0]), self._assembled(), "block_swapped",
                                  file="+".join(item[0]), **cost)
                elif self.failed:  # this part or an earlier one failed (_add recorded it)
                    self._settle_best()
        self._finish()

    def _steps(self) -> int:
        return len(self.order) - 1

    def _state_after(self, step: int, parts: list[str]) -> str:
        return self.order[step + 1]

    def _add(self, parts: list[str], buf, start: int, cost: Optional[dict], err) -> Optional[dict]:
        """Build the (verified) `parts` off to the side; their costs (s), or None if they failed (recorded)."""
        if err is not None:
            self._shard_failed("+".join(parts), err)
            return None
        try:
            tensors = self._tensors({p: (buf, start) for p in parts}, cost)
            t = time.perf_counter()
            built = {}
            for part in parts:
                kind, index = parse_part(part)
                if kind != "teacher":  # a converter, enc or dec
                    built[part] = fill(getattr(self._conv_skel, kind)[index],
                                       sub_state(tensors, f"converters.{part}."))
                else:
                    i = index - 1
                    mine = sub_state(tensors, "teacher.")
                    built["block"] = (i, fill(self._skel.blocks[i], sub_state(mine, f"blocks.{i}.")),
                                      fill(self._skel.embed, sub_state(mine, "embed.")) if i == 0 else self._embed,
                                      fill(self._skel.head, sub_state(mine, "head.")) if i == self.num_blocks - 1
                                      else self._head)
            cost["build_s"] = time.perf_counter() - t
        except PWLError as e:
            self._shard_failed("+".join(parts), e)
            return None
        i, block, self._embed, self._head = built.pop("block")
        self._blocks = [*self._blocks[:i], block, *self._blocks[i + 1:]]
        self._arrived.add(i)
        self._conv_in |= set(built)
        return cost

    def _assembled(self) -> MixedModel:
        teacher = BlockNet(self._embed, self._blocks, self._head, self._skel.block_widths)
        have = lambda kind, b: converter_part(kind, b) in self._conv_in or converter_part(kind, b) not in self.index.parts  # noqa: E731
        conv = _ConverterSet(*([m if have(kind, b) else _Missing() for b, m in enumerate(getattr(self._conv_skel, kind))]
                               for kind in ("enc", "dec")))
        return MixedModel(teacher, self.student, conv)

    def _shard_failed(self, name: str, err: Exception) -> None:
        self.failed.append(name)
        if self.error is None:
            self.error = err
        self._event("shard_failed", self.state, file=name, message=str(err))

    def best_available(self) -> str:
        """The state to serve once a part has failed: best validation accuracy among the states the arrived
        parts can assemble (ties: the state served now, then more teacher blocks)."""
        current, n = self.state, self.num_blocks
        if self.accuracy is None:
            return current
        candidates = [s for s in all_states(n)
                      if all(c == STUDENT or j in self._arrived for j, c in enumerate(s))
                      and all(p in self._conv_in or p not in self.index.parts for p in needed_converters(s))]
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
    """Out-of-order loading: once the first answer is out, every teacher block (with both converters it owns:
    which one the state will need depends on the arrival order) is requested at once; the requests share the
    device's bandwidth (one token bucket) and each block is swapped in as soon as it has arrived and been
    built, so the state served is whatever subset of teacher blocks has arrived. Only an order-agnostic model
    is good in every such state."""

    def __init__(self, shard_dir: Path, profile, **kw):
        # finer chunks than one request at a time needs, so that requests read together share the bandwidth
        # closely (processor sharing, as `simulate.shared_arrivals` models it) instead of 64 KiB turn by turn
        if kw.get("reader") is None:
            kw["reader"] = ThrottledReader.from_profile(profile, chunk_size=PARALLEL_CHUNK)
        super().__init__(shard_dir, profile, None, **kw)

    @property
    def loads_teacher(self) -> bool:
        return True

    def _plan(self) -> list[list[str]]:
        return [self._whole_block([teacher_part(i)]) for i in range(1, self.num_blocks + 1)]

    def _start_reads(self, arrivals: queue.Queue) -> None:
        for parts in self._plan():
            threading.Thread(target=lambda p=parts: arrivals.put(self._read_parts(p)),
                             name=f"pwl-read-{parts[0]}", daemon=True).start()

    def _steps(self) -> int:
        return self.num_blocks

    def _state_after(self, step: int, parts: list[str]) -> str:
        """The state served now with the block that just arrived swapped in (arrival order, not an order)."""
        state = self.state
        i = next(i for kind, i in map(parse_part, parts) if kind == "teacher") - 1
        return state[:i] + TEACHER + state[i + 1:]


class TeacherOnlyModel(_Runtime):
    """Baseline: one request reads the header and every teacher block (converters skipped), the teacher is
    built, and only then it answers (state all-T). One file, one latency, as a teacher-only deployment."""

    def start(self) -> "TeacherOnlyModel":
        self._begin()
        try:
            teacher_parts = lambda index: [teacher_part(i) for i in range(1, index.num_blocks + 1)]  # noqa: E731
            chunks, cost, skeleton = self._read_first(teacher_parts, "teacher")
            self._verify(chunks, cost)
            tensors = self._tensors(chunks, cost)
            t = time.perf_counter()
            teacher = fill(skeleton, sub_state(tensors, "teacher."))
            cost["build_s"] = time.perf_counter() - t
        except Exception as e:
            self._fail(e)
            raise
        n, missing = self.num_blocks, _Missing()
        self._publish(TEACHER * n, MixedModel(teacher, BlockNet(missing, [missing] * n, missing, teacher.block_widths),
                                              missing), "teacher_complete", **cost)
        return self
