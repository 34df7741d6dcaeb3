"""Scheduling the teacher's arrival: the loader thread waits for the first answer, builds the teacher's skeleton
in one turn, starts the reads (reader threads request the planned steps back to back, verified there) and
builds each arrival in its own turn, off to the side, then swaps the next state in. A strategy
(pwl.runtime.strategies) says which reads it plans, how many arrivals there are and which state each makes."""
import queue
import threading
import time

import torch

from ..errors import PWLError
from ..mixing import Converters, MixedModel
from ..models import BlockNet
from ..states import TEACHER
from .faults import best_available, whole_block
from .pack import converter_part, parse_part
from .serving import Runtime
from .skeletons import ConverterSet, Missing, converter_config, fill, sub_state


class BlockLoader(Runtime):
    """The loading half of a progressive runtime. Hooks a strategy defines: `_planned_reads()` (the parts of each
    request, in order), `_start_reads(arrivals)` (the reader threads), `_arrival_count()` and
    `_state_with(step, parts)` (the state to serve once `parts` are built)."""

    def _build_teacher_skeleton(self, student: BlockNet) -> None:
        t = time.perf_counter()
        self._skel = self.factory("teacher")
        with torch.device("meta"):
            self._conv_skel = Converters(self._skel.block_widths, student.block_widths,
                                         converter_config(self.index.meta))
        self._skel_s = time.perf_counter() - t

    def _load_teacher(self) -> None:
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
                    self._build_teacher_skeleton(self.student)
            self._event("skeleton_built", self.state, skeleton_s=self._skel_s, prebuilt=prebuilt)
            missing = Missing()
            self._embed, self._blocks, self._head = missing, [missing] * self.num_blocks, missing
            self._arrived: set[int] = set()  # teacher blocks (0-based)
            self._conv_in: set[str] = set()  # converter parts loaded
            arrivals: queue.Queue = queue.Queue()
            self._start_reads(arrivals)
            self._build_arrivals(arrivals)
        except Exception as e:  # noqa: BLE001  (any other failure: keep serving the last good state)
            self._fail(e)

    def _whole_block(self, parts: list[str]) -> list[str]:
        return whole_block(parts, self.num_blocks, self.index.parts)

    def _next_arrival(self, arrivals: queue.Queue):
        """The next arrival, or None once stopped."""
        while not self._stop.is_set():
            try:
                return arrivals.get(timeout=0.05)
            except queue.Empty:
                continue
        return None

    def _build_arrivals(self, arrivals: queue.Queue) -> None:
        """Each arrival in turn: built, then swapped in (the next state), or, once a part failed, the best state
        the arrived parts assemble."""
        for step in range(self._arrival_count()):
            item = self._next_arrival(arrivals)
            if item is None:
                return
            with self._loader_turn():
                cost = self._build_parts(*item)
                if cost is not None and not self.failed:
                    self._publish(self._state_with(step, item[0]), self._assembled(), "block_swapped",
                                  file="+".join(item[0]), **cost)
                elif self.failed:  # this part or an earlier one failed (_build_parts recorded it)
                    self._serve_best_available()
        self._finish()

    def _build_parts(self, parts: list[str], buf, start: int, cost, err):
        """Build the (verified) `parts` off to the side; their costs (s), or None if they failed (recorded)."""
        if err is not None:
            self._part_failed("+".join(parts), err)
            return None
        try:
            tensors = self._deserialize({p: (buf, start) for p in parts}, cost)
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
            self._part_failed("+".join(parts), e)
            return None
        i, block, self._embed, self._head = built.pop("block")
        self._blocks = [*self._blocks[:i], block, *self._blocks[i + 1:]]
        self._arrived.add(i)
        self._conv_in |= set(built)
        return cost

    def _assembled(self) -> MixedModel:
        teacher = BlockNet(self._embed, self._blocks, self._head, self._skel.block_widths)

        def have(kind, b):  # loaded, or an identity the pack does not store
            return converter_part(kind, b) in self._conv_in or converter_part(kind, b) not in self.index.parts
        conv = ConverterSet(*([m if have(kind, b) else Missing() for b, m in enumerate(getattr(self._conv_skel, kind))]
                              for kind in ("enc", "dec")))
        return MixedModel(teacher, self.student, conv)

    def _part_failed(self, name: str, err: Exception) -> None:
        self.failed.append(name)
        if self.error is None:
            self.error = err
        self._event("shard_failed", self.state, file=name, message=str(err))

    def best_available(self) -> str:
        """The state to serve once a part has failed (pwl.runtime.faults.best_available)."""
        return best_available(self.state, self.num_blocks, self.accuracy, self._arrived, self._conv_in,
                              self.index.parts)

    def _serve_best_available(self) -> None:
        best = self.best_available()
        if best != self.state:
            self._publish(best, self._assembled(), "block_swapped")

    def _finish(self) -> None:
        state = self.state
        self._event("teacher_complete" if state == TEACHER * self.num_blocks else "loading_incomplete", state)

    def _start_reads(self, arrivals: queue.Queue) -> None:
        """One reader thread reads and verifies the planned steps back to back (it never waits for the builder);
        after a failure it reads whole blocks."""
        def run():
            failed = False
            for parts in self._planned_reads():
                if self._stop.is_set():
                    return
                item = self._request_parts(self._whole_block(parts) if failed else parts)
                failed = failed or item[-1] is not None
                arrivals.put(item)
        threading.Thread(target=run, name="pwl-reader", daemon=True).start()
