"""The client and the job commands run without the server's libraries (the client installs alone)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest

from synthjobs.ledger import tokens
from synthjobs.settings import Settings
from synthjobs_client import config

ROOT = Path(__file__).resolve().parents[2]
SERVER_SIDE = ("sqlalchemy", "alembic", "celery", "kombu", "redis", "boto3", "botocore", "torch", "synthjobs")

# Run in a fresh interpreter where importing any server-side package fails, as on a machine where only
# `pip install synthjobs` (httpx + the CLI) was installed.
BLOCKED = textwrap.dedent(
    f"""
    import sys
    from importlib.abc import MetaPathFinder

    class Blocked(MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in {SERVER_SIDE!r}:
                raise ImportError(f"{{name}} is not installed here")
            return None

    sys.meta_path.insert(0, Blocked())
    """
)


def _run_blocked(code: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-c", BLOCKED + textwrap.dedent(code)],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_job_commands_run_without_sqlalchemy_celery_boto3_or_torch() -> None:
    result = _run_blocked(
        """
        from synthjobs_client import cli
        from synthjobs_client.client import Client
        code = cli.main(["--api-url", "http://127.0.0.1:1", "status", "0123456789abcdef0123456789abcdef"])
        assert code == cli.EXIT_UNREACHABLE, code
        print("ok")
        """
    )
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr


def test_help_lists_the_server_commands_without_importing_the_server() -> None:
    result = _run_blocked(
        """
        from synthjobs_client import cli
        try:
            cli.main(["--help"])
        except SystemExit as exc:
            assert exc.code == 0
        """
    )
    assert result.returncode == 0, result.stderr
    for command in ("api", "worker", "beat", "migrate", "tick", "reconcile", "admin", "demo", "status"):
        assert command in result.stdout


def test_a_server_command_without_the_server_says_what_to_install() -> None:
    result = _run_blocked(
        """
        from synthjobs_client import cli
        assert cli.main(["migrate"]) == cli.EXIT_USAGE
        """
    )
    assert result.returncode == 0, result.stderr
    assert "pip install 'synthjobs[server]'" in result.stderr


def test_client_finds_the_same_token_as_the_server_wrote(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("SYNTHJOBS_API_TOKEN", "SYNTHJOBS_ADMIN_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SYNTHJOBS_HOME", str(tmp_path))
    assert config.client_token() is None
    written = tokens.local_token(Settings(home=tmp_path), create=True)
    assert config.TOKEN_FILE == tokens.TOKEN_FILE
    assert config.client_token() == written
    monkeypatch.setenv("SYNTHJOBS_ADMIN_TOKEN", "admin-secret")
    assert config.client_token() == "admin-secret"
    monkeypatch.setenv("SYNTHJOBS_API_TOKEN", "tenant-secret")
    assert config.client_token() == "tenant-secret"


def test_the_base_install_declares_no_server_library() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    base = " ".join(project["dependencies"]).lower()
    for name in ("sqlalchemy", "celery", "boto3", "torch", "fastapi", "alembic"):
        assert name not in base, name
    for name in ("httpx", "typer", "rich"):  # the client, the CLI and its progress bars
        assert name in base, name
    server = " ".join(project["optional-dependencies"]["server"]).lower()
    for name in ("sqlalchemy", "celery", "boto3", "fastapi"):
        assert name in server, name
