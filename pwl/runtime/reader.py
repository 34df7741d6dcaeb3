"""Read files as a slow device would: bytes arrive at a fixed rate after a per-file open latency.

The simulation must pay for bytes it really reads, so files are read with plain `read` calls in chunks
(never mmap, which would make loading free) and the reader sleeps until each chunk's bytes are paid for
by a token bucket. `safetensors.torch.load(bytes)` then deserializes what came back.
"""
import threading
import time
from pathlib import Path

from ..errors import PWLError

CHUNK = 64 * 1024


class TokenBucket:
    """`rate` tokens (bytes) per second. Starts empty; idle time banks at most `burst` bytes.

    Taking more than is available runs into debt and sleeps until it is repaid; sleeps shorter than
    `min_sleep` are deferred (the debt carries over), so tiny chunks at high rates stay accurate.
    """

    def __init__(self, rate: float, burst: float = 0.0, min_sleep: float = 1e-3):
        if not rate > 0:
            raise PWLError(f"read bandwidth must be > 0 bytes/s, got {rate}", "use a positive read_bandwidth")
        self.rate, self.burst, self.min_sleep = float(rate), float(burst), min_sleep
        self.tokens, self.last = 0.0, time.perf_counter()
        self._lock = threading.Lock()

    def take(self, n: int) -> None:
        with self._lock:
            now = time.perf_counter()
            self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate) - n
            self.last = now
            wait = -self.tokens / self.rate
        if wait >= self.min_sleep:
            time.sleep(wait)

    def drain(self) -> None:
        """Forget banked idle time: each file then costs exactly its bytes / rate (what the analytical model says)."""
        with self._lock:
            self.tokens, self.last = min(0.0, self.tokens), time.perf_counter()

    def settle(self) -> None:
        """Sleep off any outstanding debt (at the end of a file, so its last byte has really arrived)."""
        with self._lock:
            now = time.perf_counter()
            self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
            self.last = now
            wait = -self.tokens / self.rate
        if wait > 0:
            time.sleep(wait)


class ThrottledReader:
    """Reads whole files through one token bucket (one storage device); counts bytes and files read.

    Several threads may read at once (the out-of-order strategy requests every shard together): they share
    the bucket, so each gets a fair share of the bandwidth, chunk by chunk."""

    def __init__(self, bandwidth: float, open_latency_s: float = 0.0, chunk_size: int = CHUNK,
                 burst: float | None = None):
        if open_latency_s < 0 or chunk_size < 1:
            raise PWLError(f"bad reader settings: open latency {open_latency_s} s, chunk {chunk_size} B",
                           "use open_latency_s >= 0 and chunk_size >= 1")
        # burst of one chunk credits oversleeping within a file; idle time between files is never banked
        self.bucket = TokenBucket(bandwidth, chunk_size if burst is None else burst)
        self.open_latency_s, self.chunk_size = open_latency_s, chunk_size
        self.bytes_read, self.files_read = 0, 0
        self.log: list[dict] = []  # per file: path, bytes, seconds
        self._lock = threading.Lock()
        self._active = 0  # files being read now

    @classmethod
    def from_profile(cls, profile, **kw) -> "ThrottledReader":
        return cls(profile.read_bandwidth, profile.open_latency_s, **kw)

    def read(self, path: Path) -> bytes:
        t0 = time.perf_counter()
        time.sleep(self.open_latency_s)
        with self._lock:
            self._active += 1
            alone = self._active == 1
        if alone:
            self.bucket.drain()
        chunks = []
        try:
            with open(path, "rb", buffering=0) as f:
                while chunk := f.read(self.chunk_size):
                    chunks.append(chunk)
                    with self._lock:
                        self.bytes_read += len(chunk)
                    self.bucket.take(len(chunk))
        finally:
            with self._lock:
                self._active -= 1
                alone = self._active == 0
        if alone:  # with other reads in flight the outstanding debt is theirs: do not wait for their bytes
            self.bucket.settle()
        data = b"".join(chunks)
        with self._lock:
            self.files_read += 1
            self.log.append({"path": str(path), "bytes": len(data), "s": time.perf_counter() - t0})
        return data


class PlainReader:
    """Unthrottled reads with the same interface (for exports, checks and measurements)."""

    def __init__(self):
        self.bytes_read, self.files_read, self.log = 0, 0, []
        self._lock = threading.Lock()

    def read(self, path: Path) -> bytes:
        data = Path(path).read_bytes()
        with self._lock:
            self.bytes_read += len(data)
            self.files_read += 1
        return data
