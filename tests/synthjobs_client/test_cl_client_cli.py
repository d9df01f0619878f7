"""The HTTP client's error mapping and polling, and the CLI's exit codes.

The client runs against `httpx.MockTransport`, so these check its own logic with no API behind it.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from synthjobs_client import cli, output
from synthjobs_client.client import Client
from synthjobs_client.errors import APIUnreachable, ClientError, JobFailed, WaitTimeout
from synthjobs_client.progress import progress_printer

JOB_ID = "6f1c2a9e-0d43-4e7a-9b8f-1a2b3c4d5e6f"


def _job(
    state: str, progress: float = 0.0, phase: str = "queued", error: str | None = None
) -> dict[str, Any]:
    return {
        "id": JOB_ID,
        "kind": "train",
        "state": state,
        "phase": phase,
        "progress": progress,
        "error": error,
        "result": None,
    }


def _scripted(jobs: list[dict[str, Any]]) -> tuple[httpx.MockTransport, list[httpx.Request]]:
    """A transport answering successive GETs with `jobs` (repeating the last one) and recording requests."""
    seen: list[httpx.Request] = []
    answers: Iterator[dict[str, Any]] = iter(jobs)
    last: list[dict[str, Any]] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.method == "POST":
            return httpx.Response(202, json=_job("QUEUED"))
        job = next(answers, None)
        if job is not None:
            last[:] = [job]
        return httpx.Response(200, json=last[0])

    return httpx.MockTransport(handle), seen


def _client(transport: httpx.MockTransport) -> Client:
    return Client("http://api.test/", transport=transport)


@pytest.fixture
def no_sleep(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Record the client's poll intervals instead of sleeping (no jitter)."""
    slept: list[float] = []
    monkeypatch.setattr("synthjobs_client.client.time.sleep", slept.append)
    monkeypatch.setattr("synthjobs_client.client.random.uniform", lambda low, high: 1.0)
    return slept


def test_wait_returns_the_job_when_it_succeeds(no_sleep: list[float]) -> None:
    transport, seen = _scripted([_job("QUEUED"), _job("RUNNING", 0.5, "epoch 1/2"), _job("SUCCEEDED", 1.0)])
    progress: list[str] = []
    with _client(transport) as client:
        done = client.wait(JOB_ID, on_progress=lambda job: progress.append(job["state"]))
    assert done["state"] == "SUCCEEDED"
    assert progress == ["QUEUED", "RUNNING", "SUCCEEDED"]
    assert [str(r.url) for r in seen] == [f"http://api.test/v1/jobs/{JOB_ID}"] * 3
    assert len(no_sleep) == 2


@pytest.mark.parametrize("state", ["FAILED", "CANCELLED"])
def test_wait_raises_job_failed_with_the_last_state(no_sleep: list[float], state: str) -> None:
    transport, _ = _scripted([_job("RUNNING", 0.3, "epoch 3"), _job(state, 0.3, "failed", "loss is NaN")])
    with _client(transport) as client, pytest.raises(JobFailed, match=f"ended {state}: loss is NaN") as info:
        client.wait(JOB_ID)
    assert info.value.job["state"] == state and info.value.job["error"] == "loss is NaN"


def test_wait_raises_wait_timeout_when_the_job_never_finishes() -> None:
    transport, seen = _scripted([_job("RUNNING", 0.1, "epoch 1")])
    with _client(transport) as client, pytest.raises(WaitTimeout, match="still RUNNING after 0.2s"):
        client.wait(JOB_ID, timeout=0.2, poll=0.02, max_poll=0.05)
    assert len(seen) >= 2


def test_wait_with_zero_timeout_polls_once_without_sleeping(no_sleep: list[float]) -> None:
    transport, seen = _scripted([_job("QUEUED")])
    with _client(transport) as client, pytest.raises(WaitTimeout):
        client.wait(JOB_ID, timeout=0)
    assert len(seen) == 1 and no_sleep == []


def test_wait_backs_off_while_nothing_changes_and_resets_on_progress(no_sleep: list[float]) -> None:
    same = _job("RUNNING", 0.1, "epoch 1")
    moved = _job("RUNNING", 0.2, "epoch 2")
    transport, _ = _scripted([same, same, same, same, same, moved, moved, _job("SUCCEEDED", 1.0)])
    with _client(transport) as client:
        client.wait(JOB_ID, poll=1.0, max_poll=2.0)
    assert no_sleep == pytest.approx([1.0, 1.5, 2.0, 2.0, 2.0, 1.0, 1.5])


def test_error_status_raises_client_error_with_status_and_detail() -> None:
    detail = [{"loc": ["body", "seed"], "msg": "must be >= 0"}]
    transport = httpx.MockTransport(lambda request: httpx.Response(422, json={"detail": detail}))
    with _client(transport) as client, pytest.raises(ClientError) as info:
        client.submit_train({"seed": -1})
    assert info.value.status == 422 and info.value.detail == detail


def test_error_status_with_a_non_json_body_keeps_the_text() -> None:
    transport = httpx.MockTransport(lambda request: httpx.Response(502, text="<html>bad gateway</html>"))
    with _client(transport) as client, pytest.raises(ClientError) as info:
        client.get(JOB_ID)
    assert info.value.status == 502 and info.value.detail == "<html>bad gateway</html>"


def test_transport_failure_raises_api_unreachable_after_retrying_the_connection(
    no_sleep: list[float],
) -> None:
    attempts: list[httpx.Request] = []

    def refuse(request: httpx.Request) -> httpx.Response:
        attempts.append(request)
        raise httpx.ConnectError("connection refused", request=request)

    with _client(httpx.MockTransport(refuse)) as client, pytest.raises(APIUnreachable, match="api.test"):
        client.health()
    assert len(attempts) == 4 and no_sleep == [0.25, 0.5, 1.0], "3 retries, backing off"


def test_a_post_that_may_have_reached_the_api_is_not_resent(no_sleep: list[float]) -> None:
    attempts: list[httpx.Request] = []

    def time_out(request: httpx.Request) -> httpx.Response:
        attempts.append(request)
        raise httpx.ReadTimeout("no answer", request=request)

    with _client(httpx.MockTransport(time_out)) as client, pytest.raises(APIUnreachable):
        client.submit_train({"dataset": "digits"})
    assert len(attempts) == 1 and no_sleep == []


def test_list_sends_only_the_filters_given() -> None:
    transport, seen = _scripted([{"items": [], "next_cursor": None}])
    with _client(transport) as client:
        client.list(state="RUNNING", limit=5)
    assert dict(seen[0].url.params) == {"state": "RUNNING", "limit": "5"}


# --- CLI ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["status", JOB_ID],
        ["list"],
        ["models"],
        ["train", "--epochs", "2"],
        ["sample", "digits-cvae:1", "--per-class", "10"],
        ["wait", JOB_ID, "--timeout", "1"],
    ],
)
def test_cli_exits_3_when_the_api_cannot_be_reached(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["--api-url", "http://127.0.0.1:1", *argv]) == cli.EXIT_UNREACHABLE == 3
    assert "cannot reach the API at http://127.0.0.1:1" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["bogus"],
        ["sample", "digits-cvae:1"],
        ["train", "--epochs", "many"],
        ["train", "--conditioning", "bogus"],
        ["status"],
        ["list", "--limit", "x"],
    ],
)
def test_cli_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    assert info.value.code == 2
    captured = capsys.readouterr()
    # No command at all prints the whole help (Typer writes it to stdout); any other mistake, the usage line
    # and the error on stderr.
    assert "usage: synthjobs" in (captured.out if not argv else captured.err).lower()


def _error_lines(capsys: pytest.CaptureFixture[str]) -> list[str]:
    """The CLI's `error:` lines on stderr (not log records an app of another test may route there)."""
    return [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]


@pytest.fixture
def cli_against(monkeypatch: pytest.MonkeyPatch) -> Callable[[httpx.MockTransport], None]:
    """Point the CLI's client at a mock transport."""

    def install(transport: httpx.MockTransport) -> None:
        monkeypatch.setattr(
            output, "client_for", lambda options: Client("http://api.test", transport=transport)
        )

    return install


def test_cli_status_prints_the_job_as_json(
    cli_against: Callable[[httpx.MockTransport], None], capsys: pytest.CaptureFixture[str]
) -> None:
    cli_against(_scripted([_job("RUNNING", 0.5, "epoch 1/2")])[0])
    assert cli.main(["status", JOB_ID, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["state"] == "RUNNING"


def test_cli_train_sends_only_the_flags_given(cli_against: Callable[[httpx.MockTransport], None]) -> None:
    transport, seen = _scripted([])
    cli_against(transport)
    assert cli.main(["train", "--epochs", "3", "--beta", "0.5", "--model-name", "m1", "--json"]) == 0
    assert json.loads(seen[0].content) == {
        "dataset": "digits",
        "hyperparameters": {"epochs": 3, "beta": 0.5},
        "seed": 0,
        "model_name": "m1",
    }


def test_cli_exits_1_when_a_waited_job_fails(
    cli_against: Callable[[httpx.MockTransport], None], no_sleep: list[float]
) -> None:
    cli_against(_scripted([_job("RUNNING"), _job("FAILED", error="boom")])[0])
    assert cli.main(["wait", JOB_ID, "--json"]) == cli.EXIT_JOB_FAILED == 1


def test_cli_exits_4_when_waiting_times_out(
    cli_against: Callable[[httpx.MockTransport], None], no_sleep: list[float]
) -> None:
    cli_against(_scripted([_job("RUNNING")])[0])
    assert cli.main(["wait", JOB_ID, "--timeout", "0", "--json"]) == cli.EXIT_TIMEOUT == 4


def test_cli_exits_2_when_the_api_rejects_the_request(
    cli_against: Callable[[httpx.MockTransport], None], capsys: pytest.CaptureFixture[str]
) -> None:
    cli_against(httpx.MockTransport(lambda request: httpx.Response(422, json={"detail": "epochs too high"})))
    assert cli.main(["train", "--epochs", "99999"]) == cli.EXIT_USAGE == 2
    assert _error_lines(capsys) == ["error: epochs too high"]


def test_cli_prints_a_validation_error_as_field_and_reason_not_a_python_repr(
    cli_against: Callable[[httpx.MockTransport], None], capsys: pytest.CaptureFixture[str]
) -> None:
    detail = [
        {"loc": ["body", "dataset", "root"], "msg": "must be inside /data", "type": "value_error"},
        {"loc": ["body", "hyperparameters", "epochs"], "msg": "Input should be >= 1", "type": "greater_than"},
        {"loc": ["header", "Idempotency-Key"], "msg": "1-200 printable characters", "type": "value_error"},
    ]
    cli_against(httpx.MockTransport(lambda request: httpx.Response(422, json={"detail": detail})))
    assert cli.main(["train", "--dataset", "mnist:/elsewhere"]) == cli.EXIT_USAGE
    assert _error_lines(capsys) == [
        "error: dataset.root: must be inside /data; hyperparameters.epochs: Input should be >= 1; "
        "Idempotency-Key (header): 1-200 printable characters"
    ]


def test_client_error_keeps_the_apis_detail_and_a_readable_message() -> None:
    detail = [{"loc": ["body", "dataset", "torchvision", "root"], "msg": "bad", "type": "value_error"}]
    transport = httpx.MockTransport(lambda request: httpx.Response(422, json={"detail": detail}))
    with _client(transport) as client, pytest.raises(ClientError) as info:
        client.submit_train({})
    assert info.value.detail == detail
    assert info.value.message == "dataset.torchvision.root: bad"
    assert str(info.value) == "HTTP 422: dataset.torchvision.root: bad"


@pytest.mark.parametrize("status", [502, 503, 504])
def test_cli_exits_3_when_a_proxy_says_the_api_is_not_there(
    status: int, cli_against: Callable[[httpx.MockTransport], None], capsys: pytest.CaptureFixture[str]
) -> None:
    cli_against(httpx.MockTransport(lambda request: httpx.Response(status, text="<html>bad gateway</html>")))
    assert cli.main(["status", JOB_ID]) == cli.EXIT_UNREACHABLE
    assert f"error: the API is not answering (HTTP {status})" in capsys.readouterr().err


# --- progress -------------------------------------------------------------------------------------------


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_is_plain_lines_when_not_a_terminal() -> None:
    stream = io.StringIO()
    show = progress_printer(stream)
    for job in (
        _job("RUNNING", 0.5, "epoch 1/2"),
        _job("RUNNING", 0.5, "epoch 1/2"),
        _job("SUCCEEDED", 1.0, "done"),
    ):
        show(job)
    assert stream.getvalue() == "RUNNING 50% epoch 1/2\nSUCCEEDED 100% done\n"


def test_progress_is_a_rich_bar_on_a_terminal_that_ends_with_the_job() -> None:
    stream = _Terminal()
    show = progress_printer(stream)
    show(_job("RUNNING", 0.25, "epoch 1/4"))
    show(_job("SUCCEEDED", 1.0, "done"))
    text = stream.getvalue()
    assert "━" in text and "100%" in text and "SUCCEEDED" in text and text.endswith("\x1b[?25h")
