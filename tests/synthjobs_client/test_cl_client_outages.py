"""The client over real sockets when the API is briefly not there: a refused connection is retried with
backoff, and `wait()` polls through an API restart or a proxy's 502/503/504 until its deadline.

A small HTTP server on localhost plays the API (and the proxy in front of it), so the failures are real
ones: a closed port, a 503 answer, a server that comes back on the same port.
"""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from synthjobs_client import cli
from synthjobs_client.client import Client
from synthjobs_client.errors import APIUnreachable, ClientError

JOB_ID = "6f1c2a9e-0d43-4e7a-9b8f-1a2b3c4d5e6f"
Answer = tuple[int, dict[str, Any] | str]
Serve = Callable[[int, list[Answer]], "FakeAPI"]


def _job(state: str, progress: float = 0.5) -> dict[str, Any]:
    return {"id": JOB_ID, "kind": "train", "state": state, "phase": state.lower(), "progress": progress}


class FakeAPI(http.server.ThreadingHTTPServer):
    """Answers each GET with the next of `answers` (repeating the last), counting the requests."""

    def __init__(self, port: int, answers: list[Answer]) -> None:
        self.answers, self.requests = answers, 0
        super().__init__(("127.0.0.1", port), _Handler)

    def next_answer(self) -> Answer:
        self.requests += 1
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]


class _Handler(http.server.BaseHTTPRequestHandler):
    server: FakeAPI

    def do_GET(self) -> None:  # noqa: N802 (the name http.server calls)
        status, body = self.server.next_answer()
        data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/html" if isinstance(body, str) else "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def serve() -> Iterator[Callable[[int, list[Answer]], FakeAPI]]:
    """Start a FakeAPI on a port (0: any free one); every server started is stopped at the end."""
    started: list[FakeAPI] = []

    def start(port: int, answers: list[Answer]) -> FakeAPI:
        server = FakeAPI(port, answers)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        started.append(server)
        return server

    yield start
    for server in started:
        stop(server)


def stop(server: FakeAPI) -> None:
    """Shut a server down and close its port (idempotent)."""
    server.shutdown()
    server.server_close()


def _url(server: FakeAPI) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}"


def test_a_refused_connection_is_retried_until_the_api_listens(
    serve: Serve,
) -> None:
    probe = FakeAPI(0, [(200, {})])
    port = probe.server_address[1]
    probe.server_close()  # a port nothing listens on, for now
    with Client(f"http://127.0.0.1:{port}", connect_retries=0) as client, pytest.raises(APIUnreachable):
        client.health()
    timer = threading.Timer(0.3, serve, args=(port, [(200, {"status": "ok"})]))
    timer.start()
    try:
        with Client(f"http://127.0.0.1:{port}") as client:
            assert client.health() == {"status": "ok"}
    finally:
        timer.join()


def test_wait_rides_over_a_proxy_answering_503_a_few_times(serve: Serve) -> None:
    answers: list[Answer] = [(200, _job("RUNNING")), (503, "<html>no upstream</html>"), (502, "bad gateway")]
    answers += [(504, "timeout"), (200, _job("RUNNING", 0.9)), (200, _job("SUCCEEDED", 1.0))]
    server = serve(0, answers)
    seen: list[str] = []
    with Client(_url(server)) as client:
        done = client.wait(
            JOB_ID, timeout=30, poll=0.01, max_poll=0.05, on_progress=lambda j: seen.append(j["state"])
        )
    assert done["state"] == "SUCCEEDED" and server.requests == 6
    assert seen == ["RUNNING", "RUNNING", "SUCCEEDED"], "outages report no progress"


def test_wait_rides_over_an_api_restart(serve: Serve) -> None:
    before = serve(0, [(200, _job("RUNNING"))])
    port = before.server_address[1]

    def restart() -> None:
        time.sleep(0.3)
        stop(before)  # the port is closed: connections are refused
        time.sleep(1.0)
        serve(port, [(200, _job("SUCCEEDED", 1.0))])

    thread = threading.Thread(target=restart)
    thread.start()
    try:
        with Client(f"http://127.0.0.1:{port}", connect_retries=0) as client:
            done = client.wait(JOB_ID, timeout=30, poll=0.05, max_poll=0.2)
    finally:
        thread.join()
    assert done["state"] == "SUCCEEDED" and before.requests >= 1


def test_wait_gives_up_at_its_deadline_when_the_outage_lasts(
    serve: Serve, capsys: pytest.CaptureFixture[str]
) -> None:
    server = serve(0, [(503, "down for maintenance")])
    started = time.monotonic()
    with Client(_url(server)) as client, pytest.raises(ClientError) as info:
        client.wait(JOB_ID, timeout=0.5, poll=0.05, max_poll=0.1)
    assert info.value.status == 503 and 0.3 < time.monotonic() - started < 5
    assert server.requests > 2
    assert cli.main(["--api-url", _url(server), "wait", JOB_ID, "--timeout", "0.3"]) == cli.EXIT_UNREACHABLE
    assert "error: the API is not answering (HTTP 503): down for maintenance" in capsys.readouterr().err


def test_wait_without_a_deadline_gives_up_after_max_outage(serve: Serve) -> None:
    server = serve(0, [(200, _job("RUNNING")), (502, "bad gateway")])
    with Client(_url(server)) as client, pytest.raises(ClientError, match="HTTP 502"):
        client.wait(JOB_ID, poll=0.02, max_poll=0.05, max_outage=0.3)


def test_wait_does_not_ride_over_a_refusal(serve: Serve) -> None:
    server = serve(0, [(200, _job("RUNNING")), (404, {"detail": f"no job {JOB_ID}"})])
    with Client(_url(server)) as client, pytest.raises(ClientError) as info:
        client.wait(JOB_ID, timeout=30, poll=0.01)
    assert info.value.status == 404 and server.requests == 2


def test_wait_on_an_api_never_reached_fails_at_once_instead_of_riding_out_max_outage() -> None:
    probe = FakeAPI(0, [(200, {})])
    port = probe.server_address[1]
    probe.server_close()  # a wrong URL: nothing ever listens here
    started = time.monotonic()
    with Client(f"http://127.0.0.1:{port}", connect_retries=0) as client, pytest.raises(APIUnreachable):
        client.wait(JOB_ID, poll=0.05, max_outage=600)
    assert time.monotonic() - started < 60, "a wrong URL must not be polled for max_outage"
