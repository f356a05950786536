"""Traffic through the load balancer that `gantry server` runs: an ALB created with the AWS CLI,
an `ip` target group with a health-check path, two HTTP backends started by the test on
127.0.0.1, a listener on a free port. The data plane's health checks reach DescribeTargetHealth
(initial → healthy, so `aws elbv2 wait target-in-service` returns), requests through the
listener reach both backends, and a deregistered target drains while a request to it is in
flight, then leaves before its deregistration delay once that request is done."""

from __future__ import annotations

import socket
import threading
import urllib.error
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from harness import free_port, wait_for


class Backend:
    """A local HTTP target: `/health` answers 200, `/slow` waits until released, anything else
    answers with the backend's name."""

    def __init__(self, name: str):
        self.name = name
        self.release = threading.Event()
        self.slow_in_flight = 0
        self.requests = 0
        self.lock = threading.Lock()
        backend = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                if self.path == "/health":
                    return self.reply(200, b"ok")
                with backend.lock:
                    backend.requests += 1
                if self.path == "/slow":
                    with backend.lock:
                        backend.slow_in_flight += 1
                    backend.release.wait(60)
                    with backend.lock:
                        backend.slow_in_flight -= 1
                self.reply(200, backend.name.encode())

            def reply(self, status: int, body: bytes):
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def backends():
    started = [Backend("backend-a"), Backend("backend-b")]
    yield started
    for b in started:
        b.stop()


def get(port: int, path: str = "/", host: str | None = None) -> tuple[int, str]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
    if host:
        req.add_header("Host", host)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def health(gantry, tg_arn: str) -> dict[int, tuple[str, str | None]]:
    out = gantry.aws_ok("elbv2", "describe-target-health", "--target-group-arn", tg_arn)
    return {h["Target"]["Port"]: (h["TargetHealth"]["State"], h["TargetHealth"].get("Reason"))
            for h in out["TargetHealthDescriptions"]}


def test_an_alb_carries_requests_to_healthy_targets_and_drains_on_deregistration(gantry,
                                                                                  backends):
    a, b = backends
    suffix = uuid.uuid4().hex[:8]
    lb = gantry.aws_ok("elbv2", "create-load-balancer", "--name", f"web-{suffix}",
                       "--subnets", "subnet-a", "subnet-b")["LoadBalancers"][0]
    lb_arn = lb["LoadBalancerArn"]
    gantry.aws_ok("elbv2", "wait", "load-balancer-available", "--load-balancer-arns", lb_arn)
    tg_arn = gantry.aws_ok(
        "elbv2", "create-target-group", "--name", f"web-{suffix}", "--protocol", "HTTP",
        "--port", "80", "--target-type", "ip", "--vpc-id", "vpc-1",
        "--health-check-path", "/health", "--health-check-interval-seconds", "5",
        "--health-check-timeout-seconds", "2",
        "--healthy-threshold-count", "2")["TargetGroups"][0]["TargetGroupArn"]
    port = free_port()
    listener = gantry.aws_ok("elbv2", "create-listener", "--load-balancer-arn", lb_arn,
                             "--protocol", "HTTP", "--port", str(port), "--default-actions",
                             f"Type=forward,TargetGroupArn={tg_arn}")["Listeners"][0]

    # Listening, nothing registered: ALB's 503.
    wait_for(lambda: _answers(port), 10, what=f"the listener on port {port}")
    assert get(port)[0] == 503

    targets = [f"Id=127.0.0.1,Port={a.port}", f"Id=127.0.0.1,Port={b.port}"]
    gantry.aws_ok("elbv2", "register-targets", "--target-group-arn", tg_arn, "--targets",
                  *targets)
    first = health(gantry, tg_arn)
    assert {s for s, _ in first.values()} == {"initial"}, first
    assert {r for _, r in first.values()} <= {"Elb.RegistrationInProgress",
                                              "Elb.InitialHealthChecking"}, first

    gantry.aws_ok("elbv2", "wait", "target-in-service", "--target-group-arn", tg_arn,
                  "--targets", *targets)
    assert health(gantry, tg_arn) == {a.port: ("healthy", None), b.port: ("healthy", None)}

    # Through the listener (by the load balancer's DNS name, as a browser would send it).
    seen = {get(port, host=lb["DNSName"]) for _ in range(10)}
    assert seen == {(200, "backend-a"), (200, "backend-b")}
    assert a.requests >= 4 and b.requests >= 4

    # A request to backend-a in flight, then backend-a deregistered with ELB's default delay
    # (300 s): draining while the request runs, no new requests to it, gone once it is done.
    slow: list[tuple[int, str]] = []
    threads = []
    while a.slow_in_flight == 0:
        t = threading.Thread(target=lambda: slow.append(get(port, "/slow")), daemon=True)
        t.start()
        threads.append(t)
        wait_for(lambda: a.slow_in_flight + b.slow_in_flight == len(threads), 10,
                 what="the slow request to arrive")
    gantry.aws_ok("elbv2", "deregister-targets", "--target-group-arn", tg_arn, "--targets",
                  targets[0])
    assert health(gantry, tg_arn)[a.port] == ("draining", "Target.DeregistrationInProgress")
    before = a.requests
    wait_for(lambda: all(get(port) == (200, "backend-b") for _ in range(4)), 10,
             what="new requests to go to backend-b only")
    assert a.requests == before
    assert health(gantry, tg_arn)[a.port][0] == "draining", "still in flight"
    a.release.set()
    b.release.set()
    for t in threads:
        t.join(30)
    assert sorted(slow) == sorted((200, n) for n in
                                  ["backend-a"] + ["backend-b"] * (len(threads) - 1))
    gantry.aws_ok("elbv2", "wait", "target-deregistered", "--target-group-arn", tg_arn,
                  "--targets", targets[0])
    assert health(gantry, tg_arn) == {b.port: ("healthy", None)}

    # The listener goes when it is deleted.
    gantry.aws_ok("elbv2", "delete-listener", "--listener-arn", listener["ListenerArn"])
    wait_for(lambda: not _answers(port), 10, what=f"port {port} to close")


def test_a_listener_whose_port_is_taken_is_reported_and_the_rest_is_served(gantry, backends):
    a, _ = backends
    suffix = uuid.uuid4().hex[:8]
    lb_arn = gantry.aws_ok("elbv2", "create-load-balancer", "--name", f"busy-{suffix}",
                           "--subnets", "subnet-a")["LoadBalancers"][0]["LoadBalancerArn"]
    gantry.aws_ok("elbv2", "wait", "load-balancer-available", "--load-balancer-arns", lb_arn)
    tg_arn = gantry.aws_ok("elbv2", "create-target-group", "--name", f"busy-{suffix}",
                           "--protocol", "HTTP", "--port", str(a.port), "--target-type", "ip",
                           "--vpc-id", "vpc-1")["TargetGroups"][0]["TargetGroupArn"]
    gantry.aws_ok("elbv2", "register-targets", "--target-group-arn", tg_arn,
                  "--targets", "Id=127.0.0.1")
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    busy = taken.getsockname()[1]
    free = free_port()
    try:
        for p in (busy, free):
            gantry.aws_ok("elbv2", "create-listener", "--load-balancer-arn", lb_arn,
                          "--protocol", "HTTP", "--port", str(p), "--default-actions",
                          f"Type=forward,TargetGroupArn={tg_arn}")
        # The free port serves (fail-open until the checks pass: backend-a answers).
        wait_for(lambda: _answers(free) and get(free) == (200, "backend-a"), 15,
                 what=f"the listener on port {free}")
        wait_for(lambda: f"cannot bind 127.0.0.1:{busy}" in gantry.log_text(), 10,
                 what="the log to name the port that cannot be bound")
    finally:
        taken.close()
    # Tried again on its own once the port is free: nothing in ELBv2 changes.
    wait_for(lambda: _answers(busy), 10, what=f"port {busy} to be served once free")
    assert get(busy) == (200, "backend-a")


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False
