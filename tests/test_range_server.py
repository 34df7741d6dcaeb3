"""The range server serves only regular files whose resolved path lies in the served folder, and every request
ends cleanly (issue 18): a symlink out of the folder is a 404 and never its bytes, an empty file is a 200 with no
body (it used to spin at 100% CPU), a range it cannot satisfy is a 416 saying the file's size. Loopback only;
the generated requests are derandomized and bounded (no example database in the repo)."""
import http.client
import os
import re
import threading

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pwl.errors import PWLError
from pwl.runtime.http import HttpReader, serve
from pwl.runtime.range_server import byte_range, make_server

DATA = bytes(range(256)) * 5 + b"end"  # 1283 bytes
SECRET = b"SECRET-outside-the-served-folder" * 4
TIMEOUT_S = 5  # a request that hangs (a server that spins) fails the test instead of the suite


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A folder with a file, an empty file, a link to a file inside, links out, a folder and a FIFO; a secret
    file beside the folder; a server on a thread for the module."""
    root = tmp_path_factory.mktemp("range")
    (root / "secret.bin").write_bytes(SECRET)
    d = root / "served"
    d.mkdir()
    (d / "data.bin").write_bytes(DATA)
    (d / "empty.bin").write_bytes(b"")
    (d / "sub").mkdir()
    (d / "sub" / "inner.bin").write_bytes(SECRET)
    os.symlink(d / "data.bin", d / "link_in")
    os.symlink(root / "secret.bin", d / "link_out")
    os.symlink("../secret.bin", d / "rel_out")
    os.symlink(d / "sub", d / "dir_link")
    os.symlink("/etc/hostname", d / "etc_link")
    os.mkfifo(d / "fifo")
    server = make_server(d)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield {"dir": d, "port": server.server_address[1]}
    server.shutdown()
    server.server_close()


def get(port: int, path: str, range_header=None) -> tuple[int, dict, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT_S)
    try:
        conn.request("GET", path, headers={} if range_header is None else {"Range": range_header})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


@pytest.mark.parametrize("name", ["link_out", "rel_out", "etc_link", "dir_link", "sub", "fifo", "nothing",
                                  "sub/inner.bin", "dir_link/inner.bin", "%2e%2e/secret.bin", "../secret.bin"])
def test_only_regular_files_inside_the_folder_are_served(served, name):
    for rng in (None, "bytes=0-"):
        status, _, body = get(served["port"], "/" + name, rng)
        assert status == 404 and SECRET[:6] not in body, (name, rng, status)


def test_a_link_inside_the_folder_is_served(served):
    status, headers, body = get(served["port"], "/link_in", "bytes=5-9")
    assert status == 206 and body == DATA[5:10] and headers["content-range"] == f"bytes 5-9/{len(DATA)}"


def test_an_empty_file_ends_the_request(served):
    """No Range: 200 with Content-Length 0 and the connection still usable (it used to announce 1 byte and
    spin forever reading it); any Range of an empty file cannot be satisfied: 416."""
    conn = http.client.HTTPConnection("127.0.0.1", served["port"], timeout=TIMEOUT_S)
    try:
        for _ in range(2):  # keep-alive: the second request proves the first one ended
            conn.request("GET", "/empty.bin")
            resp = conn.getresponse()
            assert (resp.status, resp.getheader("Content-Length"), resp.read()) == (200, "0", b"")
    finally:
        conn.close()
    status, headers, _ = get(served["port"], "/empty.bin", "bytes=0-")
    assert status == 416 and headers["content-range"] == "bytes */0"


@pytest.mark.parametrize("rng, expect", [
    ("bytes=0-0", (0, 0)), ("bytes=0-", (0, len(DATA) - 1)), (f"bytes={len(DATA) - 1}-", (len(DATA) - 1,) * 2),
    ("bytes=10-99999999999999999999", (10, len(DATA) - 1)), (" bytes=3-4 ", (3, 4)),
    (f"bytes={len(DATA)}-", None), ("bytes=5-4", None), ("bytes=-5", None), ("bytes=0-1,4-5", None),
    ("bytes=x-", None), ("items=0-1", None), ("", None), ("bytes=99999999999999999999-", None)])
def test_range_edge_cases(served, rng, expect):
    status, headers, body = get(served["port"], "/data.bin", rng)
    if expect is None:
        assert status == 416 and headers["content-range"] == f"bytes */{len(DATA)}"
        assert f"the file is {len(DATA)} bytes" in body.decode()
    else:
        a, b = expect
        assert status == 206 and body == DATA[a:b + 1] and headers["content-range"] == f"bytes {a}-{b}/{len(DATA)}"


def test_whole_file_without_range(served):
    status, headers, body = get(served["port"], "/data.bin")
    assert status == 200 and body == DATA and "content-range" not in headers


def test_the_reader_names_what_a_416_and_a_404_mean(served):
    reader = HttpReader(f"http://127.0.0.1:{served['port']}", 1e9, retries=0)
    with pytest.raises(PWLError, match="(?s)HTTP 416.*shorter than the pack's index says.*export the shards again"):
        with reader.open(served["dir"] / "data.bin") as f:
            f.read_at(len(DATA) + 10, 4)
    with pytest.raises(PWLError, match="(?s)HTTP 404.*a link out of the folder is not served"):
        with reader.open(served["dir"] / "link_out") as f:
            f.read_at(0, 4)
    with reader.open(served["dir"] / "data.bin") as f:
        assert f.read_at(len(DATA) - 3, 10) == b"end"


def test_the_server_process_refuses_a_link_out(tmp_path):
    """The server as the runtime starts it (its own process) applies the same rule."""
    (tmp_path / "secret.bin").write_bytes(SECRET)
    (tmp_path / "served").mkdir()
    os.symlink(tmp_path / "secret.bin", tmp_path / "served" / "pack.bin")
    with serve(tmp_path / "served") as url:
        status, _, body = get(int(url.rsplit(":", 1)[1]), "/pack.bin", "bytes=0-")
    assert status == 404 and SECRET[:6] not in body


# ------------------------------------------------------------------ generated requests

NAMES = st.one_of(
    st.sampled_from(["data.bin", "empty.bin", "link_in", "link_out", "rel_out", "etc_link", "dir_link", "sub",
                     "fifo", "nothing", "sub/inner.bin", "../secret.bin", "%2e%2e/secret.bin", "data.bin/",
                     ".", "..", "", "data.bin?x=1", "//etc/hostname", "data.bin%00", "DATA.BIN"]),
    st.text(st.sampled_from("abdt._-/%2e0~?#&="), max_size=12))
NUM = st.one_of(st.integers(0, len(DATA) + 2), st.integers(0, 10 ** 25), st.just(len(DATA) - 1))
RANGES = st.one_of(
    st.none(),
    st.builds(lambda a, b: f"bytes={a}-{b}", NUM, NUM),
    st.builds(lambda a: f"bytes={a}-", NUM),
    st.builds(lambda a: f"bytes=-{a}", NUM),
    st.builds(lambda a, b, c, d: f"bytes={a}-{b},{c}-{d}", NUM, NUM, NUM, NUM),
    st.text(st.sampled_from("bytes=0123456789-, ;x"), max_size=16))


@settings(max_examples=300, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(name=NAMES, rng=RANGES)
def test_generated_requests(served, name, rng):
    """Whatever the path and the Range header: an answer within the timeout, 200 only for a whole regular file
    inside the folder, 206 with exactly the bytes the Content-Range names, else 404 / 416 (or 400 for a
    request line http.server rejects), and never a byte of a file outside the folder."""
    try:
        status, headers, body = get(served["port"], "/" + name, rng)
    except http.client.InvalidURL:
        return  # http.client would not send it
    assert SECRET[:6] not in body
    assert status in (200, 206, 400, 404, 416), (name, rng, status)
    if status == 200:
        assert rng is None and body in (DATA, b"")
    if status == 206:
        a, b, size = map(int, re.fullmatch(r"bytes (\d+)-(\d+)/(\d+)", headers["content-range"]).groups())
        assert size == len(DATA) and body == DATA[a:b + 1] and (a, b) == byte_range(rng, size)
    if status == 416:
        assert re.fullmatch(r"bytes \*/\d+", headers["content-range"])
