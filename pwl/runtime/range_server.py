"""The HTTP server of the `http` transport: a directory served with single Range requests, each delayed by the
device's latency. Standard library only, so it runs as its own process (`python range_server.py DIR LATENCY`
prints its port, serves until its stdin closes): a server on another machine shares no interpreter with the
client, and in one process its sending loop would take the GIL from the runtime it serves.
"""
import os
import re
import stat
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Optional

SEND_CHUNK = 64 * 1024


NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")  # a plain file name: no folder, no dotfile, no escapes
RANGE = re.compile(r"bytes=(\d+)-(\d*)")


def served_file(directory: Path, name: str) -> Optional[Path]:
    """The file `name` names in `directory`, or None: only a plain name of a regular file whose *resolved* path
    lies inside the directory (a symlink out of it, a folder, a FIFO or a device is not served)."""
    if not NAME.fullmatch(name):
        return None
    root = os.path.realpath(directory)
    path = os.path.realpath(os.path.join(root, name))
    if os.path.dirname(path) != root:
        return None
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return None
    except OSError:
        return None
    return Path(path)


def byte_range(header: Optional[str], size: int) -> Optional[tuple[int, int]]:
    """(first, last) byte of `Range: bytes=a-[b]` in a file of `size` bytes (b past the end: the last byte),
    or None where it cannot be satisfied (malformed, several ranges, a starting past the end, b < a, an empty
    file)."""
    m = RANGE.fullmatch(header.strip()) if header is not None else None
    if m is None:
        return None
    start, end = int(m[1]), min(int(m[2]) if m[2] else size - 1, size - 1)
    return (start, end) if start <= end else None


class RangeHandler(BaseHTTPRequestHandler):
    """GET of a file in the served directory, whole (200) or `Range: bytes=a-[b]` (206, one range), after the
    latency. Every answer has a Content-Length, so each request ends after its body (an empty file too)."""
    protocol_version = "HTTP/1.1"

    def do_GET(self):  # noqa: N802  (the name http.server calls)
        srv = self.server
        time.sleep(srv.latency_s)
        path = served_file(srv.directory, self.path.lstrip("/"))
        if path is None:
            return self.send_error(404, explain="serve only plain files of the served folder")
        try:
            f = open(path, "rb")
        except OSError:
            return self.send_error(404)
        with f:
            size = os.fstat(f.fileno()).st_size
            header = self.headers.get("Range")
            span = (0, size - 1) if header is None else byte_range(header, size)
            if span is None:
                self.close_connection = True
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{size}")
                body = (f"range {header!r} not satisfiable: the file is {size} bytes; ask for one range "
                        f"bytes=a-[b] with a < {size}\n").encode()
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            start, end = span
            with srv.lock:
                srv.requests += 1
                number = srv.requests
            drop_after = srv.fault(number, start) if srv.fault else None
            self.send_response(200 if header is None else 206)
            if header is not None:
                self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
            self.send_header("Content-Length", str(end - start + 1))
            self.end_headers()
            f.seek(start)
            left, sent = end - start + 1, 0
            try:
                while left > 0:
                    chunk = f.read(min(SEND_CHUNK, left))
                    if not chunk:  # the file shrank under us: end the request, never spin
                        self.close_connection = True
                        return
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



def make_server(directory, latency_s: float = 0.0, fault=None) -> LoopbackServer:
    """A server on 127.0.0.1 (a free port) for `directory`; `fault(request number from 1, start byte)` ->
    bytes to send before dropping the connection, or None (tests)."""
    server = LoopbackServer(("127.0.0.1", 0), RangeHandler)
    server.directory, server.latency_s, server.fault = Path(directory), latency_s, fault
    server.lock, server.requests = threading.Lock(), 0
    return server


def main(argv: list[str]) -> None:
    server = make_server(argv[0], float(argv[1]))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(server.server_address[1], flush=True)
    sys.stdin.read()  # until the parent closes the pipe (or dies)
    server.shutdown()


if __name__ == "__main__":
    main(sys.argv[1:])
