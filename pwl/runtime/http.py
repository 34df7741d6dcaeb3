"""A real transport: the export directory served over HTTP on loopback with Range requests, as a hub serves a
model file, and a reader that fetches the pack by byte ranges with the file reader's interface.

Who pays what: the server delays every request by the device's latency (a round trip); the bytes are paid
for at the device's bandwidth where they arrive, by the reader's token bucket, so requests in flight together
share the link as they share a disk. A request reads on from where it is (`bytes=<offset>-`); a later read
further on in the same request reads through the gap, as a stream does; the connection closes with the
request. A connection that breaks mid-transfer is resumed from the last byte received (a new request, one
more latency), `retries` times, then the read fails with a PWLError naming the file and the byte.
"""
import http.client
import re
import sys
import threading
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable, Iterator, Optional
from urllib.parse import urlsplit

from ..errors import PWLError
from .reader import DeviceRequest, ThrottledReader

SEND_CHUNK = 64 * 1024
NETWORK_ERRORS = (OSError, http.client.HTTPException)


class RangeHandler(BaseHTTPRequestHandler):
    """GET of a file in the served directory, whole or `Range: bytes=a-[b]` (one range), after the latency."""
    protocol_version = "HTTP/1.1"

    def do_GET(self):  # noqa: N802  (the name http.server calls)
        srv = self.server
        time.sleep(srv.latency_s)
        name = self.path.lstrip("/")
        path = srv.directory / name
        if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", name) or not path.is_file():
            return self.send_error(404)
        size = path.stat().st_size
        m = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", f"bytes=0-{size - 1}"))
        start, end = (int(m[1]), min(int(m[2] or size - 1), size - 1)) if m else (size, 0)
        if start > end:
            return self.send_error(416)
        with srv.lock:
            srv.requests += 1
            number = srv.requests
        drop_after = srv.fault(number, start) if srv.fault else None
        self.send_response(206)
        self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.send_header("Content-Length", str(end - start + 1))
        self.end_headers()
        with open(path, "rb") as f:
            f.seek(start)
            left, sent = end - start + 1, 0
            try:
                while left:
                    chunk = f.read(min(SEND_CHUNK, left))
                    if drop_after is not None and sent + len(chunk) > drop_after:
                        self.wfile.write(chunk[:drop_after - sent])
                        self.close_connection = True
                        self.connection.shutdown(2)  # drop the connection mid-transfer
                        return
                    self.wfile.write(chunk)
                    left, sent = left - len(chunk), sent + len(chunk)
            except (BrokenPipeError, ConnectionResetError):  # the client closed its request early
                self.close_connection = True

    def log_message(self, *args):
        pass


class LoopbackServer(ThreadingHTTPServer):
    """Quiet about clients that hang up (a dropped or abandoned request is part of the test, not an error)."""
    daemon_threads = True

    def handle_error(self, request, client_address):
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


@contextmanager
def serve(directory: Path, latency_s: float = 0.0,
          fault: Optional[Callable[[int, int], Optional[int]]] = None) -> Iterator[str]:
    """Serve `directory` on 127.0.0.1 (a free port) while the block runs; yields the base URL.
    `fault(request number from 1, start byte)` -> bytes to send before dropping the connection, or None."""
    server = LoopbackServer(("127.0.0.1", 0), RangeHandler)
    server.directory, server.latency_s, server.fault = Path(directory), latency_s, fault
    server.lock, server.requests = threading.Lock(), 0
    thread = threading.Thread(target=server.serve_forever, name="pwl-http", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class HttpReader(ThrottledReader):
    """Fetches files from `base_url` (a `serve`d directory) by range requests, throttled to `bandwidth`; the
    latency is the server's. `open(path)` names the file by `path`'s name."""

    def __init__(self, base_url: str, bandwidth: float, retries: int = 2, timeout_s: float = 10.0, **kw):
        super().__init__(bandwidth, 0.0, **kw)
        url = urlsplit(base_url)
        self.host, self.port, self.retries, self.timeout_s = url.hostname, url.port, retries, timeout_s

    @classmethod
    def from_profile(cls, profile, base_url: str = "", **kw) -> "HttpReader":
        return cls(base_url, profile.read_bandwidth, **kw)

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
                           "serve the export directory with pwl.runtime.http.serve (range requests)")
        self._pos = offset

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
                if self._resp is None or self._pos > offset + got:
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
