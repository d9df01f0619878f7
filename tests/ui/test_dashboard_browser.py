"""The dashboard in a real browser (Debian's chromium driven by Playwright) against a real API and worker.

Screenshots go to tmp_path, or to `SYNTHJOBS_UI_SCREENSHOTS` when set (`make screenshots` writes docs/).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from synthjobs.devtools.stack import Stack

pytestmark = pytest.mark.integration

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TRAIN = {"dataset": "digits", "hyperparameters": {"epochs": 4}, "seed": 1, "model_name": "digits-ui"}
VIEWPORT = {"width": 1100, "height": 760}


def _missing(reason: str) -> None:
    if os.environ.get("SYNTHJOBS_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{reason} (SYNTHJOBS_REQUIRE_SERVICES=1)")
    pytest.skip(reason)


@pytest.fixture
def browser() -> Iterator[Any]:
    """A headless Debian chromium (Playwright's own browsers are never downloaded)."""
    if not Path(CHROMIUM).exists():
        _missing(f"{CHROMIUM} is not installed (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("the playwright package is not installed (the dev extra)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("SYNTHJOBS_UI_SCREENSHOTS") or tmp_path / "shots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _log_in(browser: Any, stack: Stack, token: str) -> Any:
    page = browser.new_page(viewport=VIEWPORT)
    page.set_default_timeout(30_000)
    page.goto(f"{stack.api_url}/ui/jobs")
    assert page.url.endswith("/ui/login"), "an anonymous visit lands on the login form"
    page.fill("#token", token)
    page.click("button[type=submit]")
    page.wait_for_url("**/ui/jobs")
    return page


def _other_tenant_token(stack: Stack) -> str:
    made = subprocess.run(
        [str(Path(sys.executable).parent / "synthjobs"), "admin", "create-token", "--tenant", "globex"],
        env=stack.env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return made.stdout.strip().splitlines()[0].strip()


def test_dashboard_follows_a_job_to_the_end_rolls_an_alias_back_and_hides_other_tenants(
    start_stack: Callable[..., Stack], browser: Any, shots: Path
) -> None:
    stack = start_stack()
    page = _log_in(browser, stack, stack.env["SYNTHJOBS_ADMIN_TOKEN"])
    first = stack.client.submit_train(TRAIN)
    page.goto(f"{stack.api_url}/ui/jobs/{first['id']}")
    page.wait_for_selector("#loss-chart svg polyline.series-held-out")  # drawn after the first epoch
    page.screenshot(path=shots / "job-running.png")
    page.wait_for_function("document.querySelector('#job-state').textContent === 'SUCCEEDED'", timeout=90_000)
    page.wait_for_load_state()
    assert page.inner_text("#job-progress").split("%")[0].strip() == "100"
    assert page.locator("#loss-chart polyline").count() == 2, "train and held-out lines"
    assert "held-out" in page.inner_text("#loss-chart") and "epoch" in page.inner_text("#loss-chart")

    second = stack.client.wait(stack.client.submit_train({**TRAIN, "seed": 2})["id"], timeout=120)
    assert second["state"] == "SUCCEEDED", second
    for version in (1, 2):
        stack.client.set_alias("digits-ui", "champion", version=version)
    sample = stack.client.submit_sample({"model": "digits-ui@champion", "per_class": 4, "seed": 1})
    sample = stack.client.wait(sample["id"], timeout=120)
    assert sample["state"] == "SUCCEEDED", sample
    page.goto(f"{stack.api_url}/ui/jobs/{sample['id']}")
    assert page.locator("#shard-table tbody tr").count() >= 1
    assert page.locator(".downloads a").count() >= 1, "download links of the finished sampling job"
    page.screenshot(path=shots / "job-sampling-finished.png", full_page=True)
    page.goto(f"{stack.api_url}/ui/jobs")
    assert page.locator("#job-table tbody tr").count() == 3
    page.screenshot(path=shots / "jobs-list.png")

    page.goto(f"{stack.api_url}/ui/models/digits-ui")
    assert "digits-ui@champion → v2" in page.inner_text("#alias-champion")
    page.screenshot(path=shots / "models.png", full_page=True)
    page.click("#alias-champion button")
    page.wait_for_selector(".notice")
    assert "now points at version 1" in page.inner_text(".notice")
    assert "digits-ui@champion → v1" in page.inner_text("#alias-champion")
    assert stack.client.model("digits-ui@champion")["version"] == 1

    other = _log_in(browser, stack, _other_tenant_token(stack))
    answer = other.goto(f"{stack.api_url}/ui/jobs/{first['id']}")
    assert answer is not None and answer.status == 404, "another tenant's job is not there for globex"
    other.goto(f"{stack.api_url}/ui/jobs")
    assert first["id"][:8] not in other.content()

    page.click("header button")  # log out
    page.wait_for_url("**/ui/login?*")
    page.goto(f"{stack.api_url}/ui/jobs")
    assert page.url.endswith("/ui/login"), "logging out cleared the session"
