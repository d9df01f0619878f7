"""Object storage behind one small interface (`base.Storage`): a local folder or S3 through boto3.

The backend is chosen by the URL scheme (`s3://bucket/prefix`, `file:///path`); `open_storage` is the one
place that picks it.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlparse

from synthjobs.settings import Settings
from synthjobs.storage.base import Storage
from synthjobs.storage.local import LocalStorage
from synthjobs.storage.s3 import S3Storage


def open_storage(settings: Settings, *, s3_max_attempts: int | None = None) -> Storage:
    """The storage named by the settings' URL.

    `s3_max_attempts`: HTTP attempts per S3 call (botocore retries them); default `settings.s3_max_attempts`.
    """
    url = settings.resolved_storage_url()
    parsed = urlparse(url)
    if parsed.scheme == "file":
        return LocalStorage(Path(unquote(parsed.path)))
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise ValueError(f"storage URL {url!r} names no bucket")
        return S3Storage(parsed.netloc, parsed.path, settings, max_attempts=s3_max_attempts)
    raise ValueError(f"unsupported storage URL {url!r}: use s3://bucket/prefix or file:///path")
