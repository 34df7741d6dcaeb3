"""A real transport: the export directory served over HTTP on loopback with Range requests, as a hub serves a
model file, and a reader that fetches the pack by byte ranges with the file reader's interface.

Who pays what: the server delays every request by the device's latency (a round trip); the bytes are paid
for at the device's bandwidth from the response's first byte on, by the reader's token bucket, so requests in
flight together share the link as they share a disk (the wait for the server banks nothing). A request reads
on from where it is (`bytes=<offset>-`); a later read further on reads through the gap, as a stream does, when
that is cheaper than a new request (gap / bandwidth < one latency), else it opens a new request there, as a
client that knows the file's layout would; the connection closes with the request. A connection that breaks
mid-transfer is resumed from the last byte received (a new request, one more latency), `retries` times, then
the read fails with a PWLError naming the file and the byte. The server (pwl.runtime.range_server) runs as its
own process.
"""
import http.client
import subprocess
import sys
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Optional
from urllib.parse import urlsplit

from ..errors import PWLError
from . import range_server
from .range_server import make_server
from .reader import DeviceRequest, ThrottledReader

NETWORK_ERRORS = (OSError, http.client.HTTPException)
# what a status the runtime cannot use means for it, and what fixes it
STATUS_HINTS = {
    404: "the served folder has no regular file of that name inside it (a link out of the folder is not served): "
         "serve the export directory the runtime reads (models/<arch>/shards), with the pack in it",
    416: "the served file ends before that byte: it is shorter than the pack's index says (a truncated or "
         "replaced file); export the shards again (dvc repro export@<arch>) and serve that folder",
}


@contextmanager
def serve(directory: Path, latency_s: float = 0.0,
          fault: Optional[Callable[[int, int], Optional[int]]] = None) -> Iterator[str]:
    """Serve `directory` on 127.0.0.1 (a free port) while the block runs; yields the base URL. The server is
    its own process (pwl.runtime.range_server); with `fault(request number from 1, start byte)` -> bytes to
    send before dropping the connection, or None, it runs on a thread here instead (tests)."""
    if fault is not None:
        server = make_server(directory, latency_s, fault)
        thread = threading.Thread(target=server.serve_forever, name="pwl-http", daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_address[1]}"
        finally:
            server.shutdown()
            server.server_close()
        return
    # -I: the script's folder must not shadow the standard library (this package has an `http` module)
    proc = subprocess.Popen([sys.executable, "-I", range_server.__file__, str(directory), repr(latency_s)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        port = proc.stdout.readline().strip()
        if not port.isdigit():
            raise PWLError(f"the HTTP server for {directory} did not start (exit code {proc.poll()})",
                           "check that 127.0.0.1 accepts connections on a free port")
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.stdin.close()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()


class HttpReader(ThrottledReader):
    """Fetches files from `base_url` (a `serve`d directory) by range requests, throttled to `bandwidth`; the
    latency is the server's. `open(path)` names the file by `path`'s name."""

    def __init__(self, base_url: str, bandwidth: float, retries: int = 2, timeout_s: float = 10.0,
                 latency_s: float = 0.0, **kw):
        super().__init__(bandwidth, 0.0, **kw)
        url = urlsplit(base_url)
        self.host, self.port, self.retries, self.timeout_s = url.hostname, url.port, retries, timeout_s
        self.gap_bytes = latency_s * bandwidth  # read through a gap up to this, else a new request is cheaper

    @classmethod
    def from_profile(cls, profile, base_url: str = "", **kw) -> "HttpReader":
        return cls(base_url, profile.read_bandwidth, latency_s=profile.open_latency_s, **kw)

    def open(self, path: Path) -> "HttpFile":
        return HttpFile(self, Path(path).name)


class HttpFile(DeviceRequest):
    """One request to the server, opened at the first read; see the module docstring."""

    def __init__(self, reader: HttpReader, name: str):
        super().__init__(reader, f"http://{reader.host}:{reader.port}/{name}")
        self.name = name
        self._conn: Optional[http.client.HTTPConnection] = None
        self._resp: Optional[http.client.HTTPResponse] = None
        self._pos = 0

    def _request(self, offset: int) -> None:
        self._drop()
        r = self.reader
        self._conn = http.client.HTTPConnection(r.host, r.port, timeout=r.timeout_s)
        self._conn.request("GET", f"/{self.name}", headers={"Range": f"bytes={offset}-"})
        self._resp = self._conn.getresponse()
        if self._resp.status != 206:
            status = self._resp.status
            self._drop()
            raise PWLError(f"{self.path} answered HTTP {status} to a range request from byte {offset}",
                           STATUS_HINTS.get(status, "serve the export directory with pwl.runtime.http.serve "
                                                    "(range requests)"))
        self._pos = offset
        self.first_byte()

    def _drop(self) -> None:
        if self._conn is not None:
            self._conn.close()
        self._conn, self._resp = None, None

    def read_at(self, offset: int, size: int) -> bytearray:
        """`size` bytes from `offset` (fewer only at the end of the file), resuming a broken transfer."""
        buf, got, tries = bytearray(size), 0, 0
        view = memoryview(buf)
        while got < size:
            try:
                if self._resp is None or not 0 <= offset + got - self._pos <= self.reader.gap_bytes:
                    self._request(offset + got)
                while self._pos < offset + got:  # read through a gap: the bytes pass the link all the same
                    skip = self._resp.read(min(self.reader.chunk_size, offset + got - self._pos))
                    if not skip:
                        raise http.client.IncompleteRead(b"")
                    self._pos += len(skip)
                    self.arrived(len(skip))
                n = self._resp.readinto(view[got:got + self.reader.chunk_size])
            except NETWORK_ERRORS as e:
                n, err = 0, e
            else:
                err = None
            if n:
                got, self._pos = got + n, self._pos + n
                self.arrived(n)
                continue
            if err is None and self._resp is not None and self._resp.length == 0:
                break  # the end of the file
            tries += 1
            self._drop()
            if tries > self.reader.retries:
                raise PWLError(f"{self.path}: the connection broke at byte {offset + got} and {self.reader.retries} "
                               f"retries did not get further ({type(err).__name__ if err else 'no data'}: {err})",
                               "check that the server is up and the network holds; the read can be retried")
        return buf if got == size else buf[:got]

    def close(self) -> None:
        self._drop()
        super().close()
