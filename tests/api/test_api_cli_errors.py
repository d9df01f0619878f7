"""The CLI against the real app (in process): what the API rejects prints as `field: reason`, exit 2.

The CLI's client talks to the FastAPI app through the TestClient's transport, so the 422 bodies are the
API's own, not a copy of their shape.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from synthjobs_client import cli, output
from synthjobs_client.client import Client
from tests.api.conftest import ADMIN_TOKEN


@pytest.fixture
def cli_on(monkeypatch: pytest.MonkeyPatch) -> Callable[[TestClient], None]:
    def install(api: TestClient) -> None:
        client = lambda options: Client(  # noqa: E731
            "http://testserver", token=ADMIN_TOKEN, transport=api._transport
        )
        monkeypatch.setattr(output, "client_for", client)

    return install


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "--dataset", "mnist:/elsewhere/torchvision"], "error: dataset.root: "),
        (
            ["train", "--dataset", "mnist:relative"],
            "error: dataset.torchvision.root: must be an absolute path",
        ),
        (
            ["train", "--epochs", "100001"],
            "error: hyperparameters.epochs: Input should be less than or equal",
        ),
        (["sample", "nope:1", "--per-class", "1"], "error: "),
    ],
)
def test_a_rejected_request_prints_the_field_and_the_reason(
    argv: list[str],
    message: str,
    make_api: Callable[..., TestClient],
    cli_on: Callable[[TestClient], None],
    capsys: pytest.CaptureFixture[str],
) -> None:
    with capsys.disabled():  # the app's log handler binds to the stderr of now: not capsys's, closed after
        api = make_api()
    cli_on(api)
    assert cli.main(argv) == cli.EXIT_USAGE
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]  # not logs
    assert len(errors) == 1 and errors[0].startswith(message), errors
    assert "{'" not in errors[0] and "[{" not in errors[0] and "HTTP 4" not in errors[0], "no reprs"
