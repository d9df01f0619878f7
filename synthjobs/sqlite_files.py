"""SQLite files made private: they hold every tenant's jobs and the token hashes (0600, folder 0700).

Here rather than in the ledger because the settings secure the embedded broker's file too.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from urllib.parse import unquote


def sqlite_path(url: str) -> Path | None:
    """The file an SQLite URL (`sqlite:///…`, kombu's `sqla+sqlite:///…`) names; None otherwise."""
    scheme, sep, rest = url.partition(":///")
    if not sep or scheme.removeprefix("sqla+").split("+")[0] != "sqlite":
        return None
    path = unquote(rest.split("?", 1)[0])
    if not path or path == ":memory:" or path.startswith("file:"):
        return None
    return Path(path)


def secure_sqlite_file(url: str) -> None:
    """Make sure the SQLite file `url` names exists readable by its owner only (0600, a new folder 0700).

    A file made by an older version with the umask's mode (often 0644) is tightened too. Other URLs are
    left alone.
    """
    path = sqlite_path(url)
    if path is None:
        return
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            os.chmod(path, mode & 0o700)
