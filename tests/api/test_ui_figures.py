"""The job page's fidelity figures: a table with one row per class, never a printed dict."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.ui.figures import fidelity_source, fidelity_table
from synthjobs.ledger import jobs
from synthjobs.ledger.db import session_scope
from synthjobs.ledger.tables import JobState
from synthjobs.ledger.tokens import create_token

FIGURES = {"precision": 0.9, "recall": 0.8, "density": 1.1, "coverage": 0.7}
REPORT = {
    "extractor": "digits-cnn",
    "k": 5,
    "overall": {**FIGURES, "frechet_distance": 3.25, "kid": 0.012},
    "per_class": {"10": FIGURES, "2": {**FIGURES, "recall": float("nan")}, "0": FIGURES},
}


def test_the_table_has_an_all_classes_row_then_classes_in_order_with_names() -> None:
    names = [f"c{i}" for i in range(11)]
    table = fidelity_table(REPORT, names)
    assert table is not None
    assert table.headings == ["Precision", "Recall", "Density", "Coverage", "FD", "KID"]
    assert [label for label, _ in table.rows] == ["all classes", "0 (c0)", "2 (c2)", "10 (c10)"]
    assert table.rows[0][1] == [0.9, 0.8, 1.1, 0.7, 3.25, 0.012]
    assert table.rows[2][1][1] is None, "NaN is a blank cell"
    assert table.rows[1][1][4:] == [None, None], "a class without FD/KID has blank cells"
    assert (table.extractor, table.k) == ("digits-cnn", 5)


def test_a_training_jobs_report_sits_in_its_metrics_with_accuracy_by_class() -> None:
    result = {"metrics": {"fidelity": REPORT, "conditional_accuracy_per_class": {"0": 0.95, "1": 0.5}}}
    metrics = result["metrics"]
    table = fidelity_table(fidelity_source(result), [], metrics["conditional_accuracy_per_class"])
    assert table is not None and table.headings[0] == "Cond. accuracy"
    assert [label for label, _ in table.rows] == ["all classes", "0", "1", "2", "10"]
    assert table.rows[2][1][0] == 0.5 and table.rows[2][1][1] is None


@pytest.mark.parametrize("report", [None, {}, {"per_class": "junk", "overall": 3}])
def test_nothing_to_show_is_no_table(report: Any) -> None:
    assert fidelity_table(report) is None


def test_a_skipped_report_says_why() -> None:
    table = fidelity_table({"skipped": "too few rows", "extractor": "pixels"})
    assert table is not None and table.skipped == "too few rows" and table.rows == []


def test_the_job_page_renders_fidelity_as_an_html_table(
    make_api: Callable[..., TestClient], ledger_url: Callable[[TestClient], str]
) -> None:
    api = make_api(token_cache_seconds=0)
    with session_scope(ledger_url(api)) as session:
        token = create_token(session, "acme")
        job = jobs.create_job(session, "sample", {"model_id": "m"}, tenant="acme")
        job_id = job.id
    result = {"per_class": {str(i): 1 for i in range(11)}, "fidelity": REPORT, "quality": {"mean": 0.5}}
    with session_scope(ledger_url(api)) as session:
        assert jobs.claim_job(session, job_id, "w", 60)
        jobs.finish_job(session, job_id, JobState.SUCCEEDED, result=result)
    browser = TestClient(api.app)
    form = browser.get("/ui/login").text
    csrf = form.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    assert browser.post("/ui/login", data={"token": token, "csrf": csrf}).status_code == 200
    page = browser.get(f"/ui/jobs/{job_id}").text
    assert '<table class="figures fidelity">' in page
    assert '<th scope="col">Precision</th>' in page and '<th scope="col">KID</th>' in page
    assert '<th scope="row">all classes</th>' in page and '<th scope="row">10</th>' in page
    assert "{&#39;" not in page and "{'" not in page, "no dict is printed"
