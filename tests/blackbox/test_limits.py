"""No client holds the server forever: a body larger than the protocol allows is refused before
it is read, a request whose headers or body stall is cut off, and connections beyond the cap are
answered 503 at once."""

from __future__ import annotations

import json
import socket

from harness import TARGET_PREFIX, wait_for


def connect(server, timeout: float = 20.0) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", server.port), timeout=timeout)
    return s


def read_all(s: socket.socket) -> bytes:
    """Everything until the server closes the connection (bounded by the socket's timeout)."""
    out = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            return out
        out += chunk


def head(target: str, length: int, content_type: str = "application/x-amz-json-1.1") -> bytes:
    return (f"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\n"
            f"X-Amz-Target: {target}\r\nX-Amz-Date: 20260101T000000Z\r\n"
            "Authorization: AWS4-HMAC-SHA256 Credential=AK/20260101/us-east-1/ecs/aws4_request, "
            "SignedHeaders=host;x-amz-date, Signature=00\r\n"
            f"Content-Length: {length}\r\n\r\n").encode()


def status_and_body(raw: bytes) -> tuple[int, bytes]:
    head_, _, body = raw.partition(b"\r\n\r\n")
    return int(head_.split(b" ")[1]), body


def test_a_declared_100_gb_body_is_refused_without_reading_it(gantry):
    s = connect(gantry)
    s.sendall(head(f"{TARGET_PREFIX}.ListClusters", 100 * 1024**3))
    status, body = status_and_body(read_all(s))
    assert status == 413
    err = json.loads(body)
    assert err["__type"] == "RequestEntityTooLarge"
    assert str(100 * 1024**3) in err["message"]


def test_a_body_over_the_limit_is_refused_while_reading(gantry):
    # Chunked, so no length is declared: the limit applies as the body arrives.
    s = connect(gantry)
    s.sendall(head(f"{TARGET_PREFIX}.ListClusters", 0).replace(
        b"Content-Length: 0\r\n", b"Transfer-Encoding: chunked\r\n"))
    chunk = b"x" * (1 << 20)
    try:
        for _ in range(12):
            s.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
    except (BrokenPipeError, ConnectionResetError):
        pass  # the server answered and closed before the client was done
    status, body = status_and_body(read_all(s))
    assert status == 413, body
    assert json.loads(body)["__type"] == "RequestEntityTooLarge"


def test_stalled_headers_and_bodies_are_cut_off(spawn_server):
    server = spawn_server("slow", extra_args=("--header-timeout", "1", "--body-timeout", "1"))
    # Half the headers, then nothing: the server closes the connection.
    s = connect(server)
    s.sendall(b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Amz-Tar")
    assert read_all(s) == b""
    # The headers and part of the body, then nothing: the server answers 408 and closes.
    s = connect(server)
    s.sendall(head(f"{TARGET_PREFIX}.ListClusters", 100) + b'{"clu')
    status, body = status_and_body(read_all(s))
    assert status == 408
    assert json.loads(body)["__type"] == "RequestTimeout"
    # The server is none the worse.
    assert server.http("GET", "/_gantry/health").status == 200


def test_connections_beyond_the_cap_get_503_at_once(spawn_server):
    server = spawn_server("capped", extra_args=("--max-connections", "3"))
    # Three connections, each served (so the server has accepted all three). The harness's
    # readiness probe closed its own connection, but on a busy machine the server may not have
    # seen that close yet: a connection refused while the probe still holds its place is
    # closed and opened again until served.
    held = []

    def hold_one():
        s = connect(server)
        s.sendall(b"GET /_gantry/health HTTP/1.1\r\nHost: x\r\n\r\n")
        if s.recv(4096).startswith(b"HTTP/1.1 200"):
            held.append(s)
            return True
        s.close()
        return False
    for _ in range(3):
        wait_for(hold_one, 10, what="a connection under the cap to be served")
    extra = connect(server)
    raw = read_all(extra)
    assert raw.startswith(b"HTTP/1.1 503"), raw
    assert b"retry-after" in raw.lower()
    # Once one closes, new connections are served again.
    held.pop().close()

    def served():
        try:
            return server.http("GET", "/_gantry/health", timeout=5).status == 200
        except (ConnectionError, OSError):
            return False
    wait_for(served, 10, what="a connection under the cap to be served")
    for s in held:
        s.close()
