"""Where the client finds the API and its token: the same `SYNTHJOBS_*` variables the server reads.

- `SYNTHJOBS_API_URL` (default `http://127.0.0.1:8000`);
- the token: `SYNTHJOBS_API_TOKEN`, else `SYNTHJOBS_ADMIN_TOKEN`, else the file `synthjobs api` writes
  for the embedded default (`$SYNTHJOBS_HOME/api-token`, home defaulting to `./.synthjobs`).

Read from the environment directly (not through the server's settings), so the client needs neither
pydantic-settings nor any of the server's libraries.
"""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_API_URL = "http://127.0.0.1:8000"
DEFAULT_HOME = Path(".synthjobs")
TOKEN_FILE = "api-token"  # the name `synthjobs.ledger.tokens.TOKEN_FILE` writes under home


def _env(name: str) -> str | None:
    """`SYNTHJOBS_<name>`, matched without regard to case as the server's settings do."""
    wanted = f"SYNTHJOBS_{name}".upper()
    for key, value in os.environ.items():
        if key.upper() == wanted:
            return value
    return None


def api_url() -> str:
    """The API base URL: `SYNTHJOBS_API_URL`, else the embedded default's."""
    return _env("API_URL") or DEFAULT_API_URL


def home() -> Path:
    """The embedded default's home folder: `SYNTHJOBS_HOME`, else `./.synthjobs`."""
    value = _env("HOME")
    return Path(value) if value else DEFAULT_HOME


def client_token() -> str | None:
    """The token the CLI and client send: SYNTHJOBS_API_TOKEN, else the admin token, else the local file."""
    for name in ("API_TOKEN", "ADMIN_TOKEN"):
        secret = _env(name)
        if secret is not None:
            return secret
    path = home().resolve() / TOKEN_FILE
    if path.exists():
        return path.read_text().strip() or None
    return None
