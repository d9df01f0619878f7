"""The client's downloads: the bearer token reaches only the API, shards are hashed in chunks, and the CLI
refuses (with the README's exit codes) to download a job that has no outputs.

The token tests run two real HTTP servers on localhost (the API and a storage endpoint), so what is checked
is the headers that really arrive at each.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import threading
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from synthjobs_client import cli, output
from synthjobs_client.client import Client, _verify_against_manifest, is_under
from synthjobs_client.errors import JobFailed, JobNotFinished

JOB_ID = "6f1c2a9e-0d43-4e7a-9b8f-1a2b3c4d5e6f"
TOKEN = "s3cret-token"


@pytest.mark.parametrize(
    ("url", "base", "expected"),
    [
        ("http://api/v1/jobs/x/artifacts/a", "http://api", True),
        ("http://api:80/v1/jobs/x/artifacts/a", "http://api", True),
        ("http://API/v1/jobs", "http://api", True),
        ("/v1/jobs/x/artifacts/a", "http://api", True),
        ("http://api-minio:9000/bucket/shard.npz?X-Amz-Signature=ab", "http://api", False),
        ("http://api.evil.example/v1/jobs", "http://api", False),
        ("http://api@evil.example/v1/jobs", "http://api", False),
        ("//evil.example/v1/jobs", "http://api", False),
        ("https://api/v1/jobs", "http://api", False),
        ("http://api:8080/v1/jobs", "http://api", False),
        ("https://api.test:443/prefix/v1/jobs", "https://api.test/prefix/", True),
        ("https://api.test/prefix", "https://api.test/prefix", True),
        ("https://api.test/prefix-storage/shard.npz", "https://api.test/prefix", False),
        ("https://api.test/other/v1/jobs", "https://api.test/prefix", False),
        ("http://127.0.0.1:80001/x", "http://127.0.0.1:8000", False),
    ],
)
def test_only_urls_on_the_apis_scheme_host_port_and_path_count_as_the_api(
    url: str, base: str, expected: bool
) -> None:
    try:
        assert is_under(url, base) is expected
    except httpx.InvalidURL:
        assert not expected  # a port out of range is no URL of the API either


# --- real servers --------------------------------------------------------------------------------------


class Recorder(http.server.ThreadingHTTPServer):
    """An HTTP server that answers from `routes` and records (path, Authorization) of each request."""

    def __init__(self, port: int, routes: dict[str, Callable[[], tuple[int, dict[str, str], bytes]]]) -> None:
        self.routes = routes
        self.seen: list[tuple[str, str | None]] = []
        super().__init__(("127.0.0.1", port), _Handler)


class _Handler(http.server.BaseHTTPRequestHandler):
    server: Recorder

    def do_GET(self) -> None:  # noqa: N802 (the name http.server calls)
        self.server.seen.append((self.path, self.headers.get("Authorization")))
        route = self.server.routes.get(self.path.split("?")[0])
        status, headers, body = route() if route else (404, {}, b"not found")
        self.send_response(status)
        for name, value in {**headers, "Content-Length": str(len(body))}.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def _bind_pair() -> tuple[Recorder, Recorder]:
    """An API server and a storage server whose URL *text* starts with the API's (`:4123` and `:41234`)."""
    for _ in range(50):
        storage = Recorder(0, {})
        port = str(storage.server_address[1])
        try:
            return Recorder(int(port[:-1]), {}), storage
        except OSError:
            storage.server_close()
    pytest.skip("no pair of free ports where one port's digits start the other's")


@pytest.fixture
def servers() -> Iterator[tuple[Recorder, Recorder]]:
    api, storage = _bind_pair()
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in (api, storage)]
    for thread in threads:
        thread.start()
    yield api, storage
    for server in (api, storage):
        server.shutdown()
        server.server_close()


def _json(value: Any) -> Callable[[], tuple[int, dict[str, str], bytes]]:
    return lambda: (200, {"Content-Type": "application/json"}, json.dumps(value).encode())


@pytest.mark.parametrize("prefix", ["", "/api"])
def test_download_sends_the_token_to_the_api_only_never_to_storage_links_or_redirects(
    servers: tuple[Recorder, Recorder], tmp_path: Path, prefix: str
) -> None:
    api, storage = servers
    api_url = f"http://127.0.0.1:{api.server_address[1]}{prefix}"
    storage_url = f"http://127.0.0.1:{storage.server_address[1]}"
    if not prefix:
        assert storage_url.startswith(api_url), "the storage URL's text starts with the API's"
    jobs = f"{prefix}/v1/jobs/{JOB_ID}"
    links = {
        "grid.png": f"{api_url}/v1/jobs/{JOB_ID}/artifacts/grid.png?expires=1&signature=ab",
        "shard-00000.npz": f"{storage_url}/bucket/shard-00000.npz?X-Amz-Signature=cd",
        "shard-00001.npz": f"{api_url}/v1/jobs/{JOB_ID}/artifacts/shard-00001.npz",  # 307 to storage
    }
    if prefix:  # the API's host and port, but not under its path: another application
        links["shard-00002.npz"] = f"{api_url}-storage/bucket/shard-00002.npz"
    api.routes.update(
        {
            jobs: _json({"id": JOB_ID, "state": "SUCCEEDED"}),
            f"{jobs}/artifacts": _json([{"name": n, "url": u} for n, u in links.items()]),
            f"{jobs}/artifacts/grid.png": lambda: (200, {}, b"png"),
            f"{jobs}/artifacts/shard-00001.npz": lambda: (
                307,
                {"Location": f"{storage_url}/bucket/shard-00001.npz?X-Amz-Signature=ef"},
                b"",
            ),
            f"{prefix}-storage/bucket/shard-00002.npz": lambda: (200, {}, b"two"),
        }
    )
    storage.routes.update(
        {
            "/bucket/shard-00000.npz": lambda: (200, {}, b"zero"),
            "/bucket/shard-00001.npz": lambda: (200, {}, b"one"),
        }
    )
    with Client(api_url, token=TOKEN) as client:
        paths = client.download(JOB_ID, tmp_path)
    expected = {"grid.png": b"png", "shard-00000.npz": b"zero", "shard-00001.npz": b"one"}
    assert {p.name: p.read_bytes() for p in paths} == {
        **expected,
        **({"shard-00002.npz": b"two"} if prefix else {}),
    }
    elsewhere = [*storage.seen, *[(path, auth) for path, auth in api.seen if "-storage/" in path]]
    assert len(elsewhere) == (3 if prefix else 2) and all(auth is None for _, auth in elsewhere), elsewhere
    on_api = [(path, auth) for path, auth in api.seen if path.startswith(f"{prefix}/v1/")]
    assert len(on_api) == 4 and all(auth == f"Bearer {TOKEN}" for _, auth in on_api), on_api


# --- manifest verification ------------------------------------------------------------------------------


def test_verifying_a_shard_against_the_manifest_does_not_read_it_into_memory(tmp_path: Path) -> None:
    size = 48 << 20
    block = bytes(range(256)) * 4096  # 1 MiB
    digest = hashlib.sha256()
    with (tmp_path / "shard-00000.npz").open("wb") as handle:
        for _ in range(size // len(block)):
            handle.write(block)
            digest.update(block)
    manifest = {"shards": [{"key": "jobs/x/shard-00000.npz", "sha256": digest.hexdigest(), "bytes": size}]}
    tracemalloc.start()
    try:
        _verify_against_manifest(tmp_path, manifest)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20, f"verifying a {size >> 20} MiB shard held {peak >> 20} MiB"


# --- jobs without outputs -------------------------------------------------------------------------------


def _job_transport(state: str, error: str | None, seen: list[str]) -> httpx.MockTransport:
    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        if request.url.path.endswith("/artifacts"):
            return httpx.Response(200, json=[])
        return httpx.Response(200, json={"id": JOB_ID, "state": state, "error": error})

    return httpx.MockTransport(handle)


@pytest.mark.parametrize(
    ("state", "error", "exception"),
    [("CANCELLED", None, JobFailed), ("FAILED", "loss is NaN", JobFailed), ("RUNNING", None, JobNotFinished)],
)
def test_client_download_of_a_job_without_outputs_raises(
    state: str, error: str | None, exception: type[Exception], tmp_path: Path
) -> None:
    seen: list[str] = []
    with Client("http://api.test", transport=_job_transport(state, error, seen)) as client:
        with pytest.raises(exception, match=state):
            client.download(JOB_ID, tmp_path / "out")
    assert seen == [f"/v1/jobs/{JOB_ID}"] and not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("state", "error", "code", "message"),
    [
        ("CANCELLED", None, 1, f"error: job {JOB_ID} CANCELLED; it has no outputs"),
        ("FAILED", "loss is NaN", 1, f"error: job {JOB_ID} FAILED: loss is NaN; it has no outputs"),
        ("QUEUED", None, 2, f"error: job {JOB_ID} is still QUEUED: wait for it to finish, then download"),
    ],
)
def test_cli_download_of_a_job_without_outputs_exits_non_zero_saying_why(
    state: str,
    error: str | None,
    code: int,
    message: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    transport = _job_transport(state, error, [])
    monkeypatch.setattr(output, "client_for", lambda options: Client("http://api.test", transport=transport))
    assert cli.main(["download", JOB_ID, str(tmp_path / "out")]) == code
    captured = capsys.readouterr()
    assert captured.err.strip() == message and captured.out == ""
