"""The HTTP server of the `http` transport: a directory served with single Range requests, each delayed by the
device's latency. Standard library only, so it runs as its own process (`python range_server.py DIR LATENCY`
prints its port, serves until its stdin closes): a server on another machine shares no interpreter with the
client, and in one process its sending loop would take the GIL from the runtime it serves.
"""
import re
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

SEND_CHUNK = 64 * 1024


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
