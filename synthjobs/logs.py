"""Logging for every process: JSON lines for machines, plain lines for people, and no secrets in either.

`configure_logging()` installs one handler on the root logger. When stderr is not a terminal (a container, a
systemd unit, a CI log) each record is one JSON object per line: `ts` (ISO-8601 UTC), `level`, `logger`,
`message`, then whichever of `job_id`, `task_id`, `attempt`, `shard`, `worker` the record carries (through
`extra=` or `log_context`), and `exception` (the plain traceback: never frame locals). On a terminal the same
record is one readable line with the context fields appended.

`log_context(job_id=..., attempt=...)` sets context fields for everything logged inside it, in this thread or
task (contextvars), so the worker wraps a task run in it once instead of repeating ids in every call.

The handler redacts known secret values (`secrets_of(settings)`: every SecretStr setting, passwords inside
the configured URLs, the AWS secret variables) wherever they appear in a message or a traceback, and the
query string of any signed URL (`signature=`, `X-Amz-Signature=`, ...): a download link is a bearer
credential until it expires, and uvicorn's access log would otherwise keep every one the API served.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import traceback
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from json import dumps
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, TextIO
from urllib.parse import unquote, urlsplit

from pydantic import SecretStr

if TYPE_CHECKING:
    from synthjobs.settings import Settings

CONTEXT_FIELDS = ("job_id", "task_id", "attempt", "shard", "worker")
REDACTED = "[REDACTED]"
SECRET_ENV_VARS = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
# Loggers that install their own handlers; they are routed through ours instead, so every line is alike.
ADOPTED_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")

_context: ContextVar[Mapping[str, Any]] = ContextVar("synthjobs_log_context", default=MappingProxyType({}))
_HANDLER_MARK = "_synthjobs_handler"


@contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Add context fields to every record logged inside the block (nested blocks add to the outer ones).

    Args:
        **fields: any of CONTEXT_FIELDS; a None value is left out.

    Raises:
        TypeError: for a field outside CONTEXT_FIELDS (the JSON line has a fixed, known shape).
    """
    unknown = set(fields) - set(CONTEXT_FIELDS)
    if unknown:
        raise TypeError(f"unknown log context fields {sorted(unknown)}; allowed: {', '.join(CONTEXT_FIELDS)}")
    merged = {**_context.get(), **{name: value for name, value in fields.items() if value is not None}}
    token = _context.set(MappingProxyType(merged))
    try:
        yield
    finally:
        _context.reset(token)


def current_context() -> Mapping[str, Any]:
    """The context fields in effect here (read-only)."""
    return _context.get()


class ContextFilter(logging.Filter):
    """Copies the current log_context fields onto each record that does not carry them already."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in _context.get().items():
            if getattr(record, name, None) is None:
                setattr(record, name, value)
        return True


MIN_SECRET_LENGTH = 6
# A URL's query string, up to whatever ends a URL in a log line (space, quote, angle bracket, fragment).
_QUERY = re.compile(r"\?[^\s\"'<>#]+")
# Query parameters that make a URL a credential: ours, S3's (SigV4 and V2), GCS's.
_SIGNED_PARAMETER = re.compile(
    r"(?:^|[?&;])(?:signature|sig|x-amz-signature|x-amz-credential|x-amz-security-token|"
    r"awsaccesskeyid|x-goog-signature|x-goog-credential)=",
    re.IGNORECASE,
)


def redact_signed_queries(text: str) -> str:
    """`text` with the whole query string of every signed URL in it replaced by REDACTED."""
    if "?" not in text:
        return text
    return _QUERY.sub(lambda m: "?" + REDACTED if _SIGNED_PARAMETER.search(m.group()) else m.group(), text)


class RedactSecrets(logging.Filter):
    """Replaces each secret value with REDACTED in a record's message, traceback and stack.

    The message is formatted here (args merged in) so a secret passed as an argument is caught too; the
    traceback is formatted once with the standard formatter, which prints no frame locals.
    """

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        # Longest first, so a secret that contains another is replaced whole. Values shorter than
        # MIN_SECRET_LENGTH are skipped: replacing "t" or "pw" everywhere would destroy every log line, and
        # a secret that short protects nothing anyway.
        self.secrets = sorted({s for s in secrets if len(s) >= MIN_SECRET_LENGTH}, key=len, reverse=True)

    def redact(self, value: str) -> str:
        for secret in self.secrets:
            value = value.replace(secret, REDACTED)
        return redact_signed_queries(value)

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string is the handler's error to report, not ours
            return True
        record.msg, record.args = self.redact(message), ()
        if record.exc_info and not record.exc_text:
            record.exc_text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": _utc_iso(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(_context_fields(record))
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = record.stack_info
        return dumps(entry, default=str, ensure_ascii=False)


class HumanFormatter(logging.Formatter):
    """`2024-05-01T12:00:00.123Z INFO worker.tasks: message [job_id=… attempt=2]` and the traceback."""

    def format(self, record: logging.LogRecord) -> str:
        line = f"{_utc_iso(record.created)} {record.levelname} {record.name}: {record.getMessage()}"
        fields = _context_fields(record)
        if fields:
            line += " [" + " ".join(f"{name}={value}" for name, value in fields.items()) + "]"
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line += "\n" + record.exc_text
        if record.stack_info:
            line += "\n" + record.stack_info
        return line


class _CurrentStderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A handler on whatever `sys.stderr` is when a record is written, not the one at configuration time.

    A process that swaps stderr later (a test's capture, a daemon redirecting it) would otherwise leave the
    handler writing to a closed stream.
    """

    @property  # type: ignore[override]
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        pass  # always the current sys.stderr


def configure_logging(
    level: int | str = "INFO",
    *,
    json: bool | None = None,
    secrets: Iterable[str] = (),
    stream: TextIO | None = None,
) -> logging.Handler:
    """Send every log record to `stream` (default stderr), as JSON lines or readable lines.

    Calling it again replaces the handler it installed before (handlers others installed are left alone).

    Args:
        level: the root logger's level, a name ("info", "DEBUG") or a number.
        json: True for JSON lines, False for readable lines; None picks JSON unless `stream` is a terminal.
        secrets: values to redact wherever they appear (see `secrets_of`).
        stream: where lines go; stderr, looked up at call time, when None.

    Returns:
        The installed handler.
    """
    use_json = json if json is not None else not _is_terminal(stream if stream is not None else sys.stderr)
    handler = logging.StreamHandler(stream) if stream is not None else _CurrentStderrHandler()
    handler.setFormatter(JsonFormatter() if use_json else HumanFormatter())
    handler.addFilter(ContextFilter())
    handler.addFilter(RedactSecrets(secrets))
    setattr(handler, _HANDLER_MARK, True)
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _HANDLER_MARK, False)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    for name in ADOPTED_LOGGERS:
        adopted = logging.getLogger(name)
        adopted.handlers.clear()
        adopted.propagate = True
    return handler


def secrets_of(settings: Settings) -> list[str]:
    """The secret values a process configured with `settings` knows, to be redacted from its logs.

    Every SecretStr setting, each password embedded in a configured URL (as written and percent-decoded),
    and the AWS secret variables boto3 reads.
    """
    values: list[str] = []
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
            values.append(value)
        if isinstance(value, str) and "://" in value:
            values.extend(_url_passwords(value))
    values.extend(os.environ.get(name, "") for name in SECRET_ENV_VARS)
    return [value for value in values if value]


def _url_passwords(url: str) -> list[str]:
    """Passwords in `url` (kombu allows "url1;url2"), raw and percent-decoded."""
    found: list[str] = []
    for part in url.split(";"):
        netloc = urlsplit(part.strip()).netloc
        userinfo, at, _host = netloc.rpartition("@")
        if at and ":" in userinfo:
            raw = userinfo.partition(":")[2]
            found.extend({raw, unquote(raw)})
    return found


def _context_fields(record: logging.LogRecord) -> dict[str, Any]:
    fields = {}
    for name in CONTEXT_FIELDS:
        value = getattr(record, name, None)
        if value is None:
            value = _context.get().get(name)
        if value is not None:
            fields[name] = value
    return fields


def _utc_iso(created: float) -> str:
    return datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False
