"""Log lines: JSON with the job's context fields, readable lines on a terminal, and secrets redacted."""

from __future__ import annotations

import io
import json
import logging
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from synthjobs.logs import REDACTED, configure_logging, current_context, log_context, secrets_of
from synthjobs.settings import Settings

log = logging.getLogger("synthjobs.test_logs")


class Terminal(io.StringIO):
    """A stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def restore_root_logger() -> Iterator[None]:
    """Put the root logger's handlers and level back after each test."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def json_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_lines_carry_the_context_of_the_task_run() -> None:
    stream = io.StringIO()
    configure_logging("info", json=True, stream=stream)
    with log_context(job_id="job-1", task_id="task-9", attempt=2, worker="host:42"):
        log.info("epoch %d/%d", 3, 30)
        with log_context(shard=7):
            log.warning("shard slow")
    log.info("outside")

    inside, nested, outside = json_lines(stream)
    assert inside["message"] == "epoch 3/30" and inside["level"] == "INFO"
    assert inside["logger"] == "synthjobs.test_logs"
    assert inside["job_id"] == "job-1" and inside["task_id"] == "task-9" and inside["attempt"] == 2
    assert inside["worker"] == "host:42" and "shard" not in inside
    assert nested["shard"] == 7 and nested["job_id"] == "job-1" and nested["level"] == "WARNING"
    assert not {"job_id", "task_id", "attempt", "shard", "worker"} & outside.keys()
    stamp = datetime.fromisoformat(inside["ts"])
    assert stamp.utcoffset() == UTC.utcoffset(None) and abs(datetime.now(UTC) - stamp).total_seconds() < 60


def test_fields_passed_as_extra_win_over_the_context() -> None:
    stream = io.StringIO()
    configure_logging(json=True, stream=stream)
    with log_context(job_id="job-1", shard=1):
        log.info("claimed", extra={"shard": 4})
    (line,) = json_lines(stream)
    assert line["shard"] == 4 and line["job_id"] == "job-1"


def test_context_does_not_leak_into_other_threads() -> None:
    seen: list[dict[str, Any]] = []
    with log_context(job_id="job-1"):
        thread = threading.Thread(target=lambda: seen.append(dict(current_context())))
        thread.start()
        thread.join()
        assert current_context() == {"job_id": "job-1"}
    assert seen == [{}] and current_context() == {}


def test_unknown_context_fields_are_refused() -> None:
    with pytest.raises(TypeError, match="password"), log_context(password="x"):
        pass


def test_readable_lines_when_json_is_off() -> None:
    stream = io.StringIO()
    configure_logging(json=False, stream=stream)
    with log_context(job_id="job-1", attempt=1):
        log.info("training started")
    line = stream.getvalue().strip()
    assert not line.startswith("{")
    assert "INFO synthjobs.test_logs: training started [job_id=job-1 attempt=1]" in line


def test_json_is_chosen_unless_the_stream_is_a_terminal() -> None:
    piped, terminal = io.StringIO(), Terminal()
    configure_logging(stream=piped)
    log.info("to a pipe")
    configure_logging(stream=terminal)  # replaces the first handler
    log.info("to a terminal")
    assert json_lines(piped)[0]["message"] == "to a pipe" and len(json_lines(piped)) == 1
    assert "to a terminal" in terminal.getvalue() and not terminal.getvalue().startswith("{")


def test_secrets_are_redacted_from_messages_and_tracebacks() -> None:
    stream = io.StringIO()
    configure_logging(json=True, stream=stream, secrets=["hunter2-pw", "AKIA-SECRET"])
    log.info("connecting to postgresql://app:%s@db/jobs", "hunter2-pw")

    def fail(key: str) -> None:
        raise RuntimeError(f"S3 refused key {key}")

    try:
        fail("AKIA-SECRET")
    except RuntimeError:
        log.exception("upload failed")
    text = stream.getvalue()
    assert "hunter2-pw" not in text and "AKIA-SECRET" not in text
    message, failure = json_lines(stream)
    assert message["message"] == f"connecting to postgresql://app:{REDACTED}@db/jobs"
    assert f"RuntimeError: S3 refused key {REDACTED}" in failure["exception"]


def test_tracebacks_never_show_frame_locals() -> None:
    stream = io.StringIO()
    configure_logging(json=False, stream=stream)

    def fail() -> None:
        token = "local-value-" + "never-logged"  # noqa: F841 - the point: a local that must not appear
        raise ValueError("boom")

    try:
        fail()
    except ValueError:
        log.exception("job failed")
    text = stream.getvalue()
    assert "ValueError: boom" in text and "never-logged" not in text


def test_secrets_of_settings_covers_secret_fields_and_url_passwords(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws-secret")
    settings = Settings(
        database_url="postgresql+psycopg://app:p%40ss-db@db:5432/jobs",
        broker_url="redis://:redis-pw@redis:6379/0",
        s3_secret_access_key="s3-secret",  # type: ignore[arg-type]
        s3_access_key_id="s3-key-id",  # type: ignore[arg-type]
    )
    found = set(secrets_of(settings))
    assert {"p%40ss-db", "p@ss-db", "redis-pw", "s3-secret", "s3-key-id", "aws-secret"} <= found
    assert "app" not in found and "" not in found


def test_default_handler_follows_stderr_when_it_is_replaced_after_configuration(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first, second = io.StringIO(), io.StringIO()
    monkeypatch.setattr("sys.stderr", first)
    configure_logging("INFO", json=False)
    first.close()  # e.g. a test's capture that ended
    monkeypatch.setattr("sys.stderr", second)
    logging.getLogger("synthjobs.test").info("after the swap")
    assert "after the swap" in second.getvalue() and "Logging error" not in second.getvalue()
