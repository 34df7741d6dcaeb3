"""Whose turn it is on the interpreter: serving or building, never both at once.

Why: on a small CPU the loader's pure-Python building (skeletons, filling modules) and a request's forward pass
share one interpreter. Interleaved, every torch op of the forward waits for the GIL behind the loader (a
convoy: a ViT forward of ~200 ops was delayed by up to 80 ms while a 40 ms skeleton was built). Taking turns
bounds what building costs a request to one loader turn, and what a request costs building to one forward.
Reading (sleeping on the device, hashing) needs no turn and goes on beside both.
"""
import threading
import time
from collections import deque
from contextlib import contextmanager


class TurnLock:
    """A reentrant lock handed over in the order it was asked for: a thread that releases it and asks again at
    once (a serving loop) goes behind one that was already waiting (the loader), so neither starves. Reentrant
    because an event callback inside the loader's turn may serve a request (the tests do)."""

    def __init__(self):
        self._guard = threading.Lock()
        self._waiting: deque[tuple[threading.Event, int]] = deque()
        self._owner: int | None = None
        self._depth = 0

    def acquire(self) -> None:
        me = threading.get_ident()
        with self._guard:
            if self._owner == me:
                self._depth += 1
                return
            if self._owner is None and not self._waiting:
                self._owner, self._depth = me, 1
                return
            turn = threading.Event()
            self._waiting.append((turn, me))
        turn.wait()  # release() made us the owner

    def release(self) -> None:
        with self._guard:
            self._depth -= 1
            if self._depth:
                return
            if self._waiting:
                turn, self._owner = self._waiting.popleft()  # it passes to the next in line
                self._depth = 1
                turn.set()
            else:
                self._owner = None

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, *exc):
        self.release()


@contextmanager
def timed_turn(lock: TurnLock, durations: list):
    """Hold `lock` for the block; append how long it was held (s) to `durations`."""
    with lock:
        t = time.perf_counter()
        try:
            yield
        finally:
            durations.append(time.perf_counter() - t)
