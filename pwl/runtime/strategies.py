"""The loading strategies a device can run, all from one pack: `ProgressiveModel` (PWL: the student at once,
then teacher blocks in a fixed order, one request per step), `ParallelModel` (every teacher block requested at
once, each swapped in as it arrives) and `TeacherOnlyModel` (the baseline: the whole teacher, then answers).
A part that fails is recorded and the best state the other parts assemble is served (pwl.runtime.faults)."""
import queue
import threading
import time
from pathlib import Path
from typing import Optional

from ..errors import PWLError
from ..mixing import MixedModel
from ..models import BlockNet
from ..states import STUDENT, TEACHER, is_order, parse_state
from .faults import accuracy_table
from .loader import BlockLoader
from .pack import STUDENT_PART, parse_part, step_parts, teacher_part
from .reader import ThrottledReader
from .serving import Runtime
from .skeletons import Missing, fill, sub_state

FIRST_ANSWER_WAIT_S = 1.0  # longest the teacher loader waits for the first answer before it reads anyway
PARALLEL_CHUNK = 16 * 1024


class ProgressiveModel(BlockLoader):
    """PWL at run time: `start()` reads the header and the student in one request, serves, and returns;
    teacher blocks then stream in `order` from the moment the first answer is out (pwl.runtime.loader), each
    step reading only its block and the converters the new state runs (one request per step).

    order: states from all-S to all-T adding one teacher block per step, or None to serve the student only.
    factory(role) builds an empty BlockNet for 'teacher'/'student' (default: from the pack header's configs).
    accuracy: state -> validation accuracy (default: the pack header's `val_accuracy`, written by export).

    A step that fails (truncated, checksum mismatch, unreadable, unloadable) records a 'shard_failed' event and
    loading goes on with the other steps; from then on the model serves the best state the arrived parts can
    assemble (pwl.runtime.faults). Loading ends with 'teacher_complete' (all-T reached) or
    'loading_incomplete' (the state it settled on).
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
        self._conv_skel = None
        self._skel_s = 0.0  # seconds it took, wherever it was built

    @property
    def loads_teacher(self) -> bool:
        return self.order is not None

    def start(self) -> "ProgressiveModel":
        self._begin()
        if self.loads_teacher:  # started now, so that starting a thread overlaps the first request's latency
            self._thread = threading.Thread(target=self._load_teacher, name="pwl-loader", daemon=True)
            self._thread.start()
        try:
            chunks, cost, skeleton = self._first_request(lambda index: [STUDENT_PART], "student",
                                                         self._build_teacher_skeleton if self.loads_teacher else None)
            n = self.num_blocks
            if self.order is not None and len(self.order[0]) != n:
                raise PWLError(f"loading order {self.order[:2]}... has states of {len(self.order[0])} blocks, the "
                               f"model has {n}", f"give states of {n} letters")
            raw = self._accuracy_arg if self._accuracy_arg is not None else self.index.meta.get("val_accuracy")
            self.accuracy = accuracy_table(raw, n, "accuracy" if self._accuracy_arg is not None else str(self.path))
            self._verify(chunks, cost)
            tensors = self._deserialize(chunks, cost)
            t = time.perf_counter()
            self.student = fill(skeleton, sub_state(tensors, "student."))
            cost["build_s"] = time.perf_counter() - t
        except Exception as e:
            self._fail(e)
            self._stop.set()
            self._ready.set()
            raise
        missing = Missing()
        placeholder = BlockNet(missing, [missing] * n, missing, self.student.block_widths)
        self._publish(STUDENT * n, MixedModel(placeholder, self.student, missing), "student_ready", **cost)
        self._ready.set()
        return self

    def stop(self) -> None:
        """Stop loading after the block in flight (serving goes on with the state reached)."""
        self._stop.set()
        self.wait()

    def _planned_reads(self) -> list[list[str]]:
        """The parts each step reads (in the order of `self.order`) while no step has failed: the new block and
        the converters the new state runs."""
        return [step_parts(a, b, self.index.parts) for a, b in zip(self.order, self.order[1:])]

    def _arrival_count(self) -> int:
        return len(self.order) - 1

    def _state_with(self, step: int, parts: list[str]) -> str:
        """The next state of the order."""
        return self.order[step + 1]


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

    def _planned_reads(self) -> list[list[str]]:
        return [self._whole_block([teacher_part(i)]) for i in range(1, self.num_blocks + 1)]

    def _start_reads(self, arrivals: queue.Queue) -> None:
        """Every block's request at once, each on its own thread."""
        for parts in self._planned_reads():
            threading.Thread(target=lambda p=parts: arrivals.put(self._request_parts(p)),
                             name=f"pwl-read-{parts[0]}", daemon=True).start()

    def _arrival_count(self) -> int:
        return self.num_blocks

    def _state_with(self, step: int, parts: list[str]) -> str:
        """The state served now with the block that just arrived swapped in (arrival order, not an order)."""
        state = self.state
        i = next(i for kind, i in map(parse_part, parts) if kind == "teacher") - 1
        return state[:i] + TEACHER + state[i + 1:]


class TeacherOnlyModel(Runtime):
    """Baseline: one request reads the header and every teacher block (converters skipped), the teacher is
    built, and only then it answers (state all-T). One file, one latency, as a teacher-only deployment."""

    def start(self) -> "TeacherOnlyModel":
        self._begin()
        try:
            teacher_parts = lambda index: [teacher_part(i) for i in range(1, index.num_blocks + 1)]  # noqa: E731
            chunks, cost, skeleton = self._first_request(teacher_parts, "teacher")
            self._verify(chunks, cost)
            tensors = self._deserialize(chunks, cost)
            t = time.perf_counter()
            teacher = fill(skeleton, sub_state(tensors, "teacher."))
            cost["build_s"] = time.perf_counter() - t
        except Exception as e:
            self._fail(e)
            raise
        n, missing = self.num_blocks, Missing()
        self._publish(TEACHER * n, MixedModel(teacher, BlockNet(missing, [missing] * n, missing, teacher.block_widths),
                                              missing), "teacher_complete", **cost)
        return self
