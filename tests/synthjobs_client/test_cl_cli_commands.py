"""Each CLI command sends the request the API documents, from the short spellings a person types.

The client runs against `httpx.MockTransport` recording each request, so what is checked is the method,
path and body the command line turns into; `tests/integration` runs the same calls against a real stack.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from synthjobs_client import cli, output, specs
from synthjobs_client.client import Client

JOB_ID = "6f1c2a9e-0d43-4e7a-9b8f-1a2b3c4d5e6f"
DATASET_ID = "0b6c6d4e-9f43-4c1e-8a33-3f2a4b5c6d7e"
JOB = {"id": JOB_ID, "kind": "train", "state": "QUEUED", "phase": "queued", "progress": 0.0}
SCHEDULE = {
    "id": "sch-1",
    "name": "nightly",
    "cron": "0 3 * * *",
    "timezone": "UTC",
    "model_name": "digits-cvae",
    "paused": False,
    "next_due_at": "2026-12-03T03:00:00Z",
}
ALIAS = {"name": "digits-cvae", "alias": "champion", "model_id": "m-2", "version": 2}
Seen = list[tuple[str, str, Any]]


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> Callable[[Any], Seen]:
    """Point the CLI at a transport answering `answer` to everything; returns (method, path, body) seen."""

    def install(answer: Any, status: int = 200) -> Seen:
        seen: Seen = []

        def handle(request: httpx.Request) -> httpx.Response:
            body: Any = request.content
            if request.headers.get("content-type") == "application/json":
                body = json.loads(body)
            seen.append((request.method, request.url.path, body))
            return httpx.Response(204) if answer is None else httpx.Response(status, json=answer)

        transport = httpx.MockTransport(handle)
        monkeypatch.setattr(
            output, "client_for", lambda options: Client("http://api.test", transport=transport)
        )
        return seen

    return install


# --- --dataset and friends ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("digits", "digits"),
        ("mnist:/data/torchvision", {"kind": "torchvision", "name": "MNIST", "root": "/data/torchvision"}),
        ("FashionMNIST:/d", {"kind": "torchvision", "name": "FashionMNIST", "root": "/d"}),
        ("cifar10:/d", {"kind": "torchvision", "name": "CIFAR10", "root": "/d"}),
        ("s3://bucket/shapes", {"kind": "image_folder", "url": "s3://bucket/shapes"}),
        ("file:///data/shapes", {"kind": "image_folder", "url": "file:///data/shapes"}),
        (f"uploaded:{DATASET_ID}", {"kind": "uploaded", "id": DATASET_ID}),
        (DATASET_ID, {"kind": "uploaded", "id": DATASET_ID}),
        ('{"kind": "new_kind", "x": 1}', {"kind": "new_kind", "x": 1}),
    ],
)
def test_dataset_option_spells_every_dataset_kind(value: str, expected: Any) -> None:
    assert specs.parse_dataset(value) == expected


def test_dataset_option_reads_a_spec_file(tmp_path: Path) -> None:
    spec = {"kind": "torchvision", "name": "MNIST", "root": "/data", "download": True}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    assert specs.parse_dataset(f"@{tmp_path / 'spec.json'}") == spec


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "--dataset", "imagenet"],
        ["train", "--dataset", "@/no/such/spec.json"],
        ["train", "--dataset", "{not json"],
        ["sample", "m:1"],
        ["sample", "m:1", "--per-class", "10", "--total", "100"],
        ["sample", "m:1", "--per-class", "3=x"],
        ["sample", "m:1", "--total", "10", "--format", "parquet"],
        ["models", "alias", "set", "digits-cvae", "champion"],
    ],
)
def test_bad_values_are_usage_errors_before_any_request(
    argv: list[str], api: Callable[[Any], Seen], capsys: pytest.CaptureFixture[str]
) -> None:
    seen = api(JOB)
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    assert info.value.code == cli.EXIT_USAGE and seen == []
    assert "usage: synthjobs" in capsys.readouterr().err.lower()


# --- job commands ---------------------------------------------------------------------------------------


def test_train_sends_the_dataset_spec_and_only_the_flags_given(api: Callable[[Any], Seen]) -> None:
    seen = api(JOB)
    argv = ["train", "--dataset", "mnist:/data/tv", "--epochs", "2", "--architecture", "conv", "--json"]
    assert cli.main(argv) == 0
    assert seen == [
        (
            "POST",
            "/v1/jobs/train",
            {
                "dataset": {"kind": "torchvision", "name": "MNIST", "root": "/data/tv"},
                "hyperparameters": {"epochs": 2, "architecture": "conv"},
                "seed": 0,
            },
        )
    ]


@pytest.mark.parametrize("command", [["train"], ["sample", "digits-cvae@champion", "--per-class", "5"]])
def test_notify_sends_the_url_and_prints_the_secret_once(
    api: Callable[[Any], Seen], capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    notify = {"url": "https://hooks.example.com/h", "events": ["job.succeeded"], "secret": "whsec_abc"}
    seen = api({**JOB, "notify": notify})
    assert cli.main([*command, "--notify", "https://hooks.example.com/h"]) == 0
    [(_, _, body)] = seen
    assert body["notify"] == {"url": "https://hooks.example.com/h"}
    assert capsys.readouterr().err.count("whsec_abc") == 1


def test_sample_with_a_total_sends_distribution_format_and_quality(
    api: Callable[[Any], Seen], capsys: pytest.CaptureFixture[str]
) -> None:
    seen = api({**JOB, "kind": "sample"})
    argv = ["sample", "digits-cvae@champion", "--total", "1000", "--distribution", "3=0.5,8=0.5"]
    argv += ["--format", "webdataset", "--quality", "tstr", "--shard-size", "100", "--json"]
    assert cli.main(argv) == 0
    assert seen[0][2] == {
        "model": "digits-cvae@champion",
        "seed": 0,
        "temperature": 1.0,
        "total": 1000,
        "distribution": {"3": 0.5, "8": 0.5},
        "format": "webdataset",
        "quality": "tstr",
        "shard_size": 100,
    }
    assert json.loads(capsys.readouterr().out)["kind"] == "sample"


def test_sample_per_class_takes_a_count_or_a_map(api: Callable[[Any], Seen]) -> None:
    seen = api(JOB)
    assert cli.main(["sample", "m:1", "--per-class", "3=500,8=200", "--no-shuffle"]) == 0
    assert seen[0][2]["per_class"] == {"3": 500, "8": 200} and seen[0][2]["shuffle"] is False


@pytest.mark.parametrize(
    ("argv", "method", "path"),
    [
        (["jobs", "cancel", JOB_ID], "POST", f"/v1/jobs/{JOB_ID}/cancel"),
        (["cancel", JOB_ID], "POST", f"/v1/jobs/{JOB_ID}/cancel"),
        (["jobs", "delete", JOB_ID], "DELETE", f"/v1/jobs/{JOB_ID}"),
    ],
)
def test_job_actions_call_their_route(
    argv: list[str], method: str, path: str, api: Callable[[Any], Seen], capsys: pytest.CaptureFixture[str]
) -> None:
    seen = api({**JOB, "state": "CANCELLED", "deletion": "done"})
    assert cli.main([*argv, "--json"]) == 0
    assert [(m, p) for m, p, _ in seen] == [(method, path)]
    assert json.loads(capsys.readouterr().out)["id"] == JOB_ID


def test_jobs_events_lists_what_happened(
    api: Callable[[Any], Seen], capsys: pytest.CaptureFixture[str]
) -> None:
    seen = api([{"at": "2026-12-02T00:00:00Z", "kind": "claimed", "message": "claimed by w1", "data": None}])
    assert cli.main(["jobs", "events", JOB_ID]) == 0
    assert seen[0][:2] == ("GET", f"/v1/jobs/{JOB_ID}/events")
    assert "claimed by w1" in capsys.readouterr().out


# --- datasets -------------------------------------------------------------------------------------------


def test_datasets_upload_posts_the_file_and_says_how_to_train_on_it(
    api: Callable[[Any], Seen], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seen = api({"id": DATASET_ID, "name": "shapes", "num_images": 3, "bytes": 9, "created_at": "now"})
    path = tmp_path / "shapes.npz"
    path.write_bytes(b"NPZBYTES")
    assert cli.main(["datasets", "upload", str(path), "--name", "shapes"]) == 0
    method, route, body = seen[0]
    assert (method, route) == ("POST", "/v1/datasets") and b"NPZBYTES" in body and b"shapes" in body
    assert f"--dataset uploaded:{DATASET_ID}" in capsys.readouterr().out


def test_datasets_upload_of_a_missing_file_is_a_usage_error(api: Callable[[Any], Seen]) -> None:
    seen = api({})
    with pytest.raises(SystemExit) as info:
        cli.main(["datasets", "upload", "/no/such.npz"])
    assert info.value.code == 2 and seen == []


# --- schedules ------------------------------------------------------------------------------------------


def test_schedules_create_builds_the_body_from_flags(api: Callable[[Any], Seen]) -> None:
    seen = api(SCHEDULE)
    argv = ["schedules", "create", "nightly", "--cron", "0 3 * * *", "--model-name", "digits-cvae"]
    argv += ["--dataset", "digits", "--epochs", "5", "--min-tstr-gain", "0.01", "--sample-per-class", "100"]
    assert cli.main([*argv, "--json"]) == 0
    assert seen == [
        (
            "POST",
            "/v1/schedules",
            {
                "name": "nightly",
                "cron": "0 3 * * *",
                "model_name": "digits-cvae",
                "train": {"dataset": "digits", "hyperparameters": {"epochs": 5}},
                "policy": {"min_tstr_gain": 0.01},
                "sample": {"per_class": 100},
            },
        )
    ]


def test_schedules_create_from_a_file_lets_flags_override(api: Callable[[Any], Seen], tmp_path: Path) -> None:
    seen = api(SCHEDULE)
    body = {"cron": "0 4 * * *", "timezone": "Europe/Berlin", "model_name": "m", "train": {"seed": 3}}
    (tmp_path / "s.json").write_text(json.dumps(body))
    assert (
        cli.main(
            ["schedules", "create", "nightly", "--from", f"@{tmp_path / 's.json'}", "--cron", "5 4 * * *"]
        )
        == 0
    )
    assert seen[0][2] == {**body, "name": "nightly", "cron": "5 4 * * *"}


@pytest.mark.parametrize(
    ("argv", "method", "path", "body"),
    [
        (["schedules", "list"], "GET", "/v1/schedules", b""),
        (["schedules", "show", "sch-1"], "GET", "/v1/schedules/sch-1", b""),
        (["schedules", "pause", "sch-1"], "PATCH", "/v1/schedules/sch-1", {"paused": True}),
        (["schedules", "resume", "sch-1"], "PATCH", "/v1/schedules/sch-1", {"paused": False}),
        (["schedules", "runs", "sch-1"], "GET", "/v1/schedules/sch-1/runs", b""),
    ],
)
def test_schedule_commands_call_their_route(
    argv: list[str], method: str, path: str, body: Any, api: Callable[[Any], Seen]
) -> None:
    answer: Any = [SCHEDULE] if argv[1] == "list" else [] if argv[1] == "runs" else SCHEDULE
    seen = api(answer)
    assert cli.main(argv) == 0
    assert seen == [(method, path, body)]


def test_schedules_delete_takes_the_empty_204(
    api: Callable[[Any], Seen], capsys: pytest.CaptureFixture[str]
) -> None:
    seen = api(None)
    assert cli.main(["schedules", "delete", "sch-1"]) == 0
    assert seen == [("DELETE", "/v1/schedules/sch-1", b"")]
    assert "deleted" in capsys.readouterr().out


# --- models and aliases ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "method", "path", "body"),
    [
        (
            ["models", "alias", "set", "digits-cvae", "champion", "--version", "2", "--reason", "better"],
            "PUT",
            "/v1/models/digits-cvae/aliases/champion",
            {"version": 2, "reason": "better"},
        ),
        (
            ["models", "alias", "rollback", "digits-cvae", "champion"],
            "POST",
            "/v1/models/digits-cvae/aliases/champion/rollback",
            b"",
        ),
    ],
)
def test_alias_commands_call_their_route(
    argv: list[str],
    method: str,
    path: str,
    body: Any,
    api: Callable[[Any], Seen],
    capsys: pytest.CaptureFixture[str],
) -> None:
    seen = api(ALIAS)
    assert cli.main(argv) == 0
    assert seen == [(method, path, body)]
    assert "digits-cvae@champion -> digits-cvae:2" in capsys.readouterr().out


def test_alias_history_lists_each_move(
    api: Callable[[Any], Seen], capsys: pytest.CaptureFixture[str]
) -> None:
    move = {"from_model_id": "m-1", "to_model_id": "m-2", "actor": "api", "reason": "better", "at": "t"}
    seen = api([move])
    assert cli.main(["models", "alias", "history", "digits-cvae", "champion", "--json"]) == 0
    assert seen[0][:2] == ("GET", "/v1/models/digits-cvae/aliases/champion/history")
    assert json.loads(capsys.readouterr().out) == [move]


def test_models_without_a_sub_command_lists_them(
    api: Callable[[Any], Seen], capsys: pytest.CaptureFixture[str]
) -> None:
    model = {"id": "m-2", "name": "digits-cvae", "version": 2, "metrics": {}, "aliases": ["champion"]}
    seen = api({"items": [model]})
    assert cli.main(["models", "--name", "digits-cvae"]) == 0
    assert seen[0][:2] == ("GET", "/v1/models")
    out = capsys.readouterr().out
    assert "m-2  digits-cvae:2" in out and "@champion" in out


# --- help -----------------------------------------------------------------------------------------------

COMMANDS = [
    [],
    ["jobs"],
    ["models", "alias"],
    ["datasets"],
    ["schedules"],
    ["admin"],
    ["train"],
    ["sample"],
    ["status"],
    ["wait"],
    ["list"],
    ["download"],
    ["jobs", "cancel"],
    ["jobs", "delete"],
    ["jobs", "events"],
    ["models"],
    ["models", "alias", "set"],
    ["models", "alias", "history"],
    ["models", "alias", "rollback"],
    ["datasets", "upload"],
    ["schedules", "create"],
    ["schedules", "list"],
    ["schedules", "pause"],
    ["schedules", "resume"],
    ["schedules", "runs"],
    ["demo"],
    ["admin", "create-token"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "synthjobs")
def test_every_help_shows_an_example(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([*command, "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "Example" in text and f"synthjobs {' '.join(command)}" in text, text
