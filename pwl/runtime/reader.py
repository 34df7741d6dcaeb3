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
    """Reads files (whole, or byte ranges) through one token bucket (one storage device); counts bytes and
    requests (`files_read`).

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
        self.log: list[dict] = []  # per request: path, bytes, start and end (perf_counter seconds)
        self._lock = threading.Lock()
        self._active = 0  # files being read now

    @classmethod
    def from_profile(cls, profile, **kw) -> "ThrottledReader":
        return cls(profile.read_bandwidth, profile.open_latency_s, **kw)

    def read(self, path: Path) -> bytes:
        """The whole file: one open latency, then its bytes at the device's rate."""
        with self.open(path) as f:
            return bytes(f.read_at(0, Path(path).stat().st_size))

    def open(self, path: Path) -> "ThrottledFile":
        """One request to the device: pays the open latency now; every read through it is throttled."""
        return ThrottledFile(self, path)


class DeviceRequest:
    """One request in flight on a reader's device (a context manager): counts and throttles the bytes that
    arrive (`arrived`) and logs one entry (path, bytes, start, end) when closed. Subclasses fetch the bytes."""

    def __init__(self, reader: ThrottledReader, path):
        self.reader, self.path, self.bytes = reader, path, 0
        self.t_start = time.perf_counter()
        with reader._lock:
            reader._active += 1
            alone = reader._active == 1
        if alone:
            reader.bucket.drain()

    def first_byte(self) -> None:
        """The bytes start to flow now (a server's latency is over): the wait before must not bank bandwidth."""
        r = self.reader
        with r._lock:
            alone = r._active == 1
        if alone:
            r.bucket.drain()

    def arrived(self, n: int) -> None:
        """`n` more bytes came in: pay for them at the device's rate."""
        r = self.reader
        with r._lock:
            r.bytes_read += n
        self.bytes += n
        r.bucket.take(n)

    def close(self) -> None:
        r = self.reader
        with r._lock:
            r._active -= 1
            alone = r._active == 0
        if alone:  # with other reads in flight the outstanding debt is theirs: do not wait for their bytes
            r.bucket.settle()
        with r._lock:
            r.files_read += 1
            r.log.append({"path": str(self.path), "bytes": self.bytes, "start": self.t_start,
                          "end": time.perf_counter()})

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class ThrottledFile(DeviceRequest):
    """An open file on a throttled device: the open latency is paid once, at the start."""

    def __init__(self, reader: ThrottledReader, path: Path):
        t = time.perf_counter()
        time.sleep(reader.open_latency_s)
        self._f = open(path, "rb", buffering=0)
        super().__init__(reader, Path(path))
        self.t_start = t

    def read_at(self, offset: int, size: int) -> bytearray:
        """`size` bytes from `offset`; fewer only at the end of the file."""
        buf, got = bytearray(size), 0
        view = memoryview(buf)
        self._f.seek(offset)
        while got < size:
            n = self._f.readinto(view[got:got + self.reader.chunk_size])
            if not n:
                break
            got += n
            self.arrived(n)
        return buf if got == size else buf[:got]

    def close(self) -> None:
        self._f.close()
        super().close()


class PlainReader(ThrottledReader):
    """Unthrottled reads with the same interface (for warm-up runs, checks and build-time measurements)."""

    def __init__(self, **kw):
        super().__init__(1e18, 0.0, **kw)
