"""A small typed HTTP client for the synthjobs API, used by the CLI and by users' scripts.

client = Client("http://127.0.0.1:8000")
job = client.submit_train({"dataset": "digits", "hyperparameters": {"epochs": 30}})
done = client.wait(job["id"], timeout=600)

Two kinds of retry: a refused or timed-out *connection* is retried a few times with exponential backoff
(nothing reached the API, so it is safe for a POST too), and `wait()` keeps polling through an outage
(unreachable, or a proxy's 502/503/504) until its deadline. The connection retry is a loop here rather than
httpx's `HTTPTransport(retries=...)`: passing a transport turns off httpx's proxies from the environment
(`HTTPS_PROXY`), which a client behind a corporate proxy needs.
"""

from __future__ import annotations

import builtins
import hashlib
import json
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from synthjobs_client.errors import (
    APIUnreachable,
    ClientError,
    DownloadError,
    JobFailed,
    JobNotFinished,
    WaitTimeout,
)

Job = dict[str, Any]
TERMINAL = {"SUCCEEDED", "FAILED", "CANCELLED"}
# A proxy or load balancer in front of the API answers these while the API restarts: worth waiting out.
OUTAGE_STATUSES = frozenset({502, 503, 504})
CONNECT_RETRIES = 3
CONNECT_BACKOFF = 0.25  # seconds before the first retry, doubling: 0.25 + 0.5 + 1 = 1.75 s in all


def is_outage(exc: Exception) -> bool:
    """Whether `exc` says the API is (perhaps briefly) not there, rather than that it refused the request."""
    return isinstance(exc, APIUnreachable) or (isinstance(exc, ClientError) and exc.status in OUTAGE_STATUSES)


def _segment(value: str) -> str:
    """One URL path segment: a model name or alias with `/` or `@` stays one segment."""
    return quote(value, safe="")


def _sha256_of(path: Path) -> str | None:
    """The file's sha256, read in chunks: a shard can be larger than the memory of the machine checking it."""
    if not path.exists():
        return None
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _verify_against_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    for shard in manifest.get("shards", []):
        path = folder / shard["key"].rsplit("/", 1)[-1]
        digest = _sha256_of(path)
        if digest != shard["sha256"]:
            raise DownloadError(f"{path.name}: sha256 {digest} differs from the manifest's {shard['sha256']}")


_DEFAULT_PORTS = {"http": 80, "https": 443}


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    """(scheme, host, port) with the default port spelled out: `:443` and no port compare equal."""
    return url.scheme, url.host, url.port or _DEFAULT_PORTS.get(url.scheme)


def is_under(url: str, base_url: str) -> bool:
    """Whether `url` is on the API at `base_url`: same scheme, host and port, and under its path.

    The path must continue `base_url`'s path at a segment boundary (`/api` covers `/api/v1/…`, not
    `/api-other/…`). Comparing the text instead would send the token to `http://api-minio:9000/…` for a
    base of `http://api`. A relative URL is resolved against the API, as the HTTP client does.
    """
    target, base = httpx.URL(url), httpx.URL(base_url)
    if not target.is_absolute_url:
        return not target.host  # a path on the API; `//host/…` is another host
    if _origin(target) != _origin(base):
        return False
    prefix = base.path.rstrip("/")
    return target.path == prefix or target.path.startswith(prefix + "/")


class Client:
    """Talks to one synthjobs API over HTTP."""

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
        connect_retries: int = CONNECT_RETRIES,
    ):
        """`connect_retries`: attempts after the first when a connection is refused or times out."""
        self.base_url = base_url.rstrip("/")
        self.connect_retries = connect_retries
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(
            base_url=self.base_url, timeout=timeout, transport=transport, headers=headers
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One request; a failure to connect is retried with backoff, any other transport error is not.

        A read timeout or a dropped connection may have reached the API (a POST may have created a job), so
        only `wait()`, which polls a GET, rides those out.
        """
        for attempt in range(self.connect_retries + 1):
            try:
                return self._http.request(method, path, **kwargs)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                if attempt == self.connect_retries:
                    raise APIUnreachable(f"cannot reach the API at {self.base_url}: {exc}") from exc
                time.sleep(CONNECT_BACKOFF * 2**attempt)
            except httpx.TransportError as exc:
                raise APIUnreachable(f"cannot reach the API at {self.base_url}: {exc}") from exc
        raise AssertionError("unreachable")  # the loop returns or raises

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._send(method, path, **kwargs)
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail", response.text)
            except ValueError:
                detail = response.text
            raise ClientError(response.status_code, detail)
        if response.status_code == 204 or not response.content:
            return None
        return response.json()

    def health(self) -> dict[str, Any]:
        """The API's view of its dependencies (raises ClientError with the checks when degraded)."""
        result: dict[str, Any] = self._request("GET", "/healthz")
        return result

    def submit_train(self, body: dict[str, Any]) -> Job:
        """Submit a training job; returns the QUEUED job."""
        result: Job = self._request("POST", "/v1/jobs/train", json=body)
        return result

    def submit_sample(self, body: dict[str, Any]) -> Job:
        """Submit a sampling job; returns the QUEUED job."""
        result: Job = self._request("POST", "/v1/jobs/sample", json=body)
        return result

    def get(self, job_id: str) -> Job:
        """The job's current state."""
        result: Job = self._request("GET", f"/v1/jobs/{job_id}")
        return result

    def events(self, job_id: str) -> builtins.list[dict[str, Any]]:
        """What happened to the job, oldest first."""
        result: builtins.list[dict[str, Any]] = self._request("GET", f"/v1/jobs/{job_id}/events")
        return result

    def list(
        self, *, state: str | None = None, kind: str | None = None, limit: int = 50, cursor: str | None = None
    ) -> dict[str, Any]:
        """One page of jobs, newest first."""
        params = {
            k: v for k, v in {"state": state, "kind": kind, "limit": limit, "cursor": cursor}.items() if v
        }
        result: dict[str, Any] = self._request("GET", "/v1/jobs", params=params)
        return result

    def models(self, *, name: str | None = None) -> builtins.list[dict[str, Any]]:
        """Trained models, newest first."""
        result = self._request("GET", "/v1/models", params={"name": name} if name else None)
        return list(result["items"])

    def model(self, model_id: str) -> dict[str, Any]:
        """One trained model."""
        result: dict[str, Any] = self._request("GET", f"/v1/models/{model_id}")
        return result

    def cancel(self, job_id: str) -> Job:
        """Cancel a queued or running job (ClientError 409 for a finished one)."""
        result: Job = self._request("POST", f"/v1/jobs/{job_id}/cancel")
        return result

    def delete(self, job_id: str) -> Job:
        """Delete a job's outputs, cancelling it first if it runs; `deletion` is `done` or `pending`."""
        result: Job = self._request("DELETE", f"/v1/jobs/{job_id}")
        return result

    def artifacts(self, job_id: str) -> builtins.list[dict[str, Any]]:
        """The job's outputs with short-lived download URLs."""
        result: builtins.list[dict[str, Any]] = self._request("GET", f"/v1/jobs/{job_id}/artifacts")
        return result

    def download(self, job_id: str, dest: str | Path) -> builtins.list[Path]:
        """Download every output of a finished job into `dest`, verifying shards against the manifest.

        Raises JobFailed for a FAILED or CANCELLED job and JobNotFinished for one still queued or running
        (neither has outputs), and DownloadError when a shard's sha256 differs from the manifest's.
        """
        job = self.get(job_id)
        if job["state"] in TERMINAL - {"SUCCEEDED"}:
            raise JobFailed(job)
        if job["state"] not in TERMINAL:
            raise JobNotFinished(job)
        folder = Path(dest)
        folder.mkdir(parents=True, exist_ok=True)
        written = []
        for artifact in self.artifacts(job_id):
            path = folder / Path(artifact["name"]).name
            self._fetch(artifact["url"], path)
            written.append(path)
        manifest = folder / "manifest.json"
        if manifest.exists():
            _verify_against_manifest(folder, json.loads(manifest.read_text()))
        return written

    def _fetch(self, url: str, path: Path) -> None:
        """Stream one URL to `path`; the bearer token goes only to the API itself, never to S3 or elsewhere.

        Redirects are followed; httpx drops the Authorization header when one leaves the API's origin.
        """
        same_host = is_under(url, self.base_url)
        client = self._http if same_host else httpx.Client(timeout=self._http.timeout)
        try:
            with client.stream("GET", url, follow_redirects=True) as response:
                if response.status_code >= 400:
                    raise ClientError(response.status_code, response.read().decode(errors="replace")[:500])
                with path.open("wb") as handle:
                    for chunk in response.iter_bytes(1 << 20):
                        handle.write(chunk)
        finally:
            if not same_host:
                client.close()

    def upload_dataset(self, path: str | Path, name: str | None = None) -> dict[str, Any]:
        """Upload an .npz dataset (`images` uint8, `labels` int, optional `class_names`)."""
        with Path(path).open("rb") as handle:
            files = {"file": (Path(path).name, handle, "application/octet-stream")}
            result: dict[str, Any] = self._request(
                "POST", "/v1/datasets", files=files, data={"name": name} if name else None
            )
        return result

    def datasets(self) -> builtins.list[dict[str, Any]]:
        """The tenant's uploaded datasets."""
        result: builtins.list[dict[str, Any]] = self._request("GET", "/v1/datasets")
        return result

    def dataset(self, dataset_id: str) -> dict[str, Any]:
        """One uploaded dataset."""
        result: dict[str, Any] = self._request("GET", f"/v1/datasets/{_segment(dataset_id)}")
        return result

    def set_alias(
        self,
        name: str,
        alias: str,
        *,
        version: int | None = None,
        model_id: str | None = None,
        reason: str = "",
    ) -> dict[str, Any]:
        """Point `name@alias` at a version (or model id)."""
        body = {"version": version, "model_id": model_id, "reason": reason}
        result: dict[str, Any] = self._request(
            "PUT",
            f"/v1/models/{_segment(name)}/aliases/{_segment(alias)}",
            json={k: v for k, v in body.items() if v is not None},
        )
        return result

    def delete_alias(self, name: str, alias: str) -> None:
        """Remove `name@alias`; jobs already submitted keep the model they were pinned to."""
        self._request("DELETE", f"/v1/models/{_segment(name)}/aliases/{_segment(alias)}")

    def alias_history(self, name: str, alias: str) -> builtins.list[dict[str, Any]]:
        """Every move of `name@alias`, newest first: from which model to which, by whom, why."""
        result: builtins.list[dict[str, Any]] = self._request(
            "GET", f"/v1/models/{_segment(name)}/aliases/{_segment(alias)}/history"
        )
        return result

    def rollback_alias(self, name: str, alias: str) -> dict[str, Any]:
        """Point `name@alias` back at its previous version."""
        result: dict[str, Any] = self._request(
            "POST", f"/v1/models/{_segment(name)}/aliases/{_segment(alias)}/rollback"
        )
        return result

    def create_schedule(self, body: dict[str, Any]) -> dict[str, Any]:
        """Create a retraining schedule."""
        result: dict[str, Any] = self._request("POST", "/v1/schedules", json=body)
        return result

    def schedules(self) -> builtins.list[dict[str, Any]]:
        """The tenant's schedules."""
        result: builtins.list[dict[str, Any]] = self._request("GET", "/v1/schedules")
        return result

    def schedule(self, schedule_id: str) -> dict[str, Any]:
        """One schedule, with its next due time."""
        result: dict[str, Any] = self._request("GET", f"/v1/schedules/{_segment(schedule_id)}")
        return result

    def update_schedule(self, schedule_id: str, changes: dict[str, Any]) -> dict[str, Any]:
        """Pause, resume or change a schedule."""
        result: dict[str, Any] = self._request(
            "PATCH", f"/v1/schedules/{_segment(schedule_id)}", json=changes
        )
        return result

    def pause_schedule(self, schedule_id: str) -> dict[str, Any]:
        """Stop a schedule firing until it is resumed."""
        return self.update_schedule(schedule_id, {"paused": True})

    def resume_schedule(self, schedule_id: str) -> dict[str, Any]:
        """Let a paused schedule fire again, from its next due time."""
        return self.update_schedule(schedule_id, {"paused": False})

    def delete_schedule(self, schedule_id: str) -> None:
        """Delete a schedule (the jobs and models it made stay)."""
        self._request("DELETE", f"/v1/schedules/{_segment(schedule_id)}")

    def schedule_runs(self, schedule_id: str) -> builtins.list[dict[str, Any]]:
        """The schedule's firings, each with its training job and outcome."""
        result: builtins.list[dict[str, Any]] = self._request(
            "GET", f"/v1/schedules/{_segment(schedule_id)}/runs"
        )
        return result

    def wait(
        self,
        job_id: str,
        *,
        timeout: float | None = None,
        on_progress: Callable[[Job], None] | None = None,
        poll: float = 0.5,
        max_poll: float = 5.0,
        max_outage: float = 300.0,
    ) -> Job:
        """Poll until the job finishes; return it on SUCCEEDED, raise JobFailed otherwise.

        Polls back off from `poll` to `max_poll` seconds with jitter, so many waiting scripts do not
        poll in lock-step; any change of progress resets the interval. An outage (the API unreachable, or
        a 502/503/504 from a proxy while it restarts) is polled through until the deadline, or for
        `max_outage` seconds without one; then its error is raised (APIUnreachable or ClientError), since
        the job's state is not known. An API never reached in this wait (a wrong URL: the transport has
        already retried the connect) and any other error (404, 401) are raised at once.
        """
        start = time.monotonic()
        deadline = None if timeout is None else start + timeout
        interval, last, down_since = poll, None, None
        while True:
            try:
                job = self.get(job_id)
            except (APIUnreachable, ClientError) as exc:
                if not is_outage(exc) or (last is None and isinstance(exc, APIUnreachable)):
                    raise  # never reached in this wait: a wrong URL fails now, not after max_outage
                down_since = time.monotonic() if down_since is None else down_since
                interval = min(interval * 1.5, max_poll)
                limit = deadline if deadline is not None else down_since + max_outage
                if time.monotonic() + interval > limit:
                    raise
                time.sleep(interval * random.uniform(0.8, 1.2))
                continue
            down_since = None
            if on_progress is not None:
                on_progress(job)
            if job["state"] in TERMINAL:
                if job["state"] != "SUCCEEDED":
                    raise JobFailed(job)
                return job
            seen = (job["state"], job["progress"], job["phase"])
            interval = poll if seen != last else min(interval * 1.5, max_poll)
            last = seen
            if deadline is not None and time.monotonic() + interval > deadline:
                raise WaitTimeout(f"job {job_id} still {job['state']} after {timeout}s")
            time.sleep(interval * random.uniform(0.8, 1.2))
