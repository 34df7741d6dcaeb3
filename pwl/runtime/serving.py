"""Serving while the model changes underneath: one (state, MixedModel) pair is published under a lock, and a
request takes that pair under the same lock and computes outside it with modules nobody mutates again (every
block is built off to the side first). Building and serving take turns on the interpreter
(pwl.runtime.turns), so a request waits for at most one loader turn. Every step is an event on a timeline
(time since launch, bytes read, state)."""
import threading
import time
from pathlib import Path
from typing import Callable, Optional

import torch

from ..errors import PWLError
from ..mixing import MixedModel
from ..models import BlockNet
from .pack import PackIndex, pack_path
from .reader import ThrottledReader
from .requests import PackRequests
from .turns import TurnLock, timed_turn


class Runtime(PackRequests):
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

    def _loader_turn(self):
        """One turn of the loader on the interpreter, timed into `loader_turns`."""
        return timed_turn(self._turns, self.loader_turns)

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
