"""`synthjobs demo`: the whole service on one machine, end to end, on the embedded default.

It starts a real uvicorn API and a real Celery worker (as separate processes), trains a CVAE on the
built-in digits through the HTTP API, bulk-samples from it, prints where the results are, and stops both.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

from synthjobs.devtools import processes
from synthjobs.settings import Settings, get_settings
from synthjobs.storage import open_storage
from synthjobs.storage.base import Storage
from synthjobs.storage.local import LocalStorage
from synthjobs_client import config
from synthjobs_client.client import Client
from synthjobs_client.errors import JobFailed
from synthjobs_client.progress import progress_printer


def run(*, epochs: int, per_class: int, seed: int, serve: bool = False) -> int:
    """Run the demo; 0 when both jobs succeed. With `serve`, keep the services up until Ctrl-C."""
    settings = get_settings()
    settings.ensure_home()
    logs = settings.home.resolve() / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    port = processes.free_port()
    base_url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "SYNTHJOBS_API_URL": base_url, "PYTHONUNBUFFERED": "1"}
    print(f"synthjobs demo: database {settings.resolved_database_url()}")
    print(f"                broker   {settings.resolved_broker_url()}")
    print(f"                storage  {settings.resolved_storage_url()}")
    print(f"                logs     {logs}/")
    token_file = settings.home.resolve() / "api-token"
    print(f"                token    {token_file} (made by the API; the CLI reads it)")
    api = processes.start_api(env, port, logs / "api.log")
    worker = None
    try:
        processes.wait_for_api(base_url, api)
        worker = processes.start_worker(env, logs / "worker.log", name="demo")
        print(f"API ready at {base_url} (docs: {base_url}/docs); worker started")
        print(f"dashboard at {base_url}/ui (log in with the token in {token_file})")
        with Client(base_url, token=config.client_token()) as client:
            code = _run_jobs(client, epochs=epochs, per_class=per_class, seed=seed)
        if serve:
            _serve_until_interrupted(base_url)
        return code
    finally:
        for process in (worker, api):
            if process is not None:
                processes.stop(process)
        print("API and worker stopped.")


def _serve_until_interrupted(base_url: str) -> None:
    """Keep the API and worker running for the dashboard and the CLI until Ctrl-C."""
    print(f"\nServing: dashboard {base_url}/ui, API {base_url}; Ctrl-C stops.")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        print()


def _run_jobs(client: Client, *, epochs: int, per_class: int, seed: int) -> int:
    started = time.monotonic()
    train = client.submit_train({"dataset": "digits", "hyperparameters": {"epochs": epochs}, "seed": seed})
    print(f"\n1/2 training job {train['id']} ({epochs} epochs on digits)")
    try:
        train = client.wait(train["id"], timeout=1800, on_progress=progress_printer(sys.stdout))
        result = train["result"]
        model = f"{result['model_name']}:{result['model_version']}"
        sample = client.submit_sample({"model": model, "per_class": per_class, "seed": seed})
        print(f"\n2/2 sampling job {sample['id']} ({per_class} samples per class from {model})")
        sample = client.wait(sample["id"], timeout=1800, on_progress=progress_printer(sys.stdout))
    except JobFailed as exc:
        print(f"\nFAILED: {exc}", file=sys.stderr)
        return 1
    _print_summary(train["result"], sample["result"], time.monotonic() - started, get_settings())
    return 0


def _print_summary(
    trained: dict[str, Any], sampled: dict[str, Any], seconds: float, settings: Settings
) -> None:
    metrics = trained["metrics"]
    per_class = ", ".join(f"{name}: {count}" for name, count in sampled["per_class"].items())
    quality = sampled["quality"].get("conditional_accuracy")
    print(f"\nDone in {seconds:.1f}s.")
    print(f"model          {trained['model_name']}:{trained['model_version']} (id {trained['model_id']})")
    print(f"held-out loss  {metrics['heldout_neg_elbo']:.2f} nats/image (negative ELBO)")
    print(f"cond. accuracy {metrics['conditional_accuracy']:.1%} at training; {quality:.1%} on this sample")
    print(f"TSTR           {metrics['tstr']:.1%} (trained only on generated digits, tested on real ones)")
    privacy = metrics.get("privacy")
    if privacy and "pixels" in privacy:
        pixels, feats = privacy["pixels"], privacy["features"]
        print(
            f"DCR share      {pixels['dcr_share']:.3f} pixels, {feats['dcr_share']:.3f} features "
            f"(~0.5: no memorisation; 1: copies); near copies {pixels['near_copies']:.1%}"
        )
    print(f"samples        {sampled['total']} ({per_class})")
    storage = open_storage(settings)
    print(f"checkpoint     {_as_path(trained['checkpoint_uri'], storage)}")
    print(f"shards         {', '.join(_as_path(u, storage) for u in sampled['output_uris'])}")
    print(f"manifest       {_as_path(sampled['manifest_uri'], storage)}")
    print(f"preview grid   {_as_path(sampled['grid_uri'], storage)}")


def _as_path(uri: str, storage: Storage) -> str:
    """A local path for objects in local storage (what a newcomer can open), the URI otherwise.

    The API names local objects by storage key; the demo runs on the machine that holds them.
    """
    if isinstance(storage, LocalStorage) and "://" not in uri:
        return str(storage.path_of(uri))
    return uri
