"""The dashboard's login: a signed HttpOnly SameSite cookie for an API token, CSRF on forms, logout."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from synthjobs.ledger.db import session_scope
from synthjobs.ledger.tokens import create_token, revoke_token

ApiFactory = Callable[..., TestClient]


@pytest.fixture
def api(make_api: ApiFactory) -> TestClient:
    return make_api(token_cache_seconds=0)


@pytest.fixture
def token(api: TestClient, ledger_url: Callable[[TestClient], str]) -> str:
    with session_scope(ledger_url(api)) as session:
        return create_token(session, "acme")


def _browser(api: TestClient) -> TestClient:
    return TestClient(api.app)  # no bearer header: only the cookie speaks for it


def _login_csrf(browser: TestClient) -> str:
    """The login form's CSRF token (its GET also sets the pre-session cookie it is bound to)."""
    return browser.get("/ui/login").text.split('name="csrf" value="', 1)[1].split('"', 1)[0]


def _login(browser: TestClient, token: str) -> str:
    data = {"token": token, "csrf": _login_csrf(browser)}
    answer = browser.post("/ui/login", data=data, follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"] == "/ui/jobs", answer.text
    return next(c for c in answer.headers.get_list("set-cookie") if c.startswith("synthjobs_session="))


def _csrf(browser: TestClient) -> str:
    return browser.get("/ui/jobs").text.split('name="csrf" value="', 1)[1].split('"', 1)[0]


def test_login_sets_an_httponly_samesite_cookie_that_holds_no_token(api: TestClient, token: str) -> None:
    cookie = _login(_browser(api), token)
    assert "httponly" in cookie.lower() and "samesite=lax" in cookie.lower() and "path=/ui" in cookie.lower()
    assert token not in cookie


def test_pages_without_a_valid_session_redirect_to_the_login_form(api: TestClient, token: str) -> None:
    browser = _browser(api)
    assert browser.get("/ui/jobs", follow_redirects=False).headers["location"] == "/ui/login"
    browser.cookies.set("synthjobs_session", "forged.value.sig", path="/ui")
    assert browser.get("/ui/jobs", follow_redirects=False).status_code == 303
    bearer = api.get("/ui/jobs", follow_redirects=False)  # a bearer token is not a dashboard session
    assert bearer.status_code == 303


def test_an_unknown_token_is_refused_at_login(api: TestClient) -> None:
    browser = _browser(api)
    data = {"token": "nope", "csrf": _login_csrf(browser)}
    answer = browser.post("/ui/login", data=data, follow_redirects=False)
    assert answer.status_code == 401
    assert not any(c.startswith("synthjobs_session=") for c in answer.headers.get_list("set-cookie"))


def test_the_login_form_carries_a_csrf_token_bound_to_an_httponly_pre_session_cookie(api: TestClient) -> None:
    browser = _browser(api)
    form = browser.get("/ui/login")
    cookie = form.headers["set-cookie"].lower()
    assert cookie.startswith("synthjobs_login=") and "httponly" in cookie and "samesite=lax" in cookie
    assert 'name="csrf" value="' in form.text


@pytest.mark.parametrize("how", ["no token", "no cookie", "another form's token", "wrong token"])
def test_a_login_without_the_forms_csrf_token_is_refused(api: TestClient, token: str, how: str) -> None:
    browser = _browser(api)
    data = {"token": token}
    if how == "no cookie":
        data["csrf"] = _login_csrf(browser)
        browser.cookies.clear()
    elif how == "another form's token":
        data["csrf"] = _login_csrf(_browser(api))  # an attacker's own form: bound to the attacker's cookie
        _login_csrf(browser)
    elif how == "wrong token":
        _login_csrf(browser)
        data["csrf"] = "0" * 64
    answer = browser.post("/ui/login", data=data, follow_redirects=False)
    assert answer.status_code == 403, answer.text
    assert "CSRF" in answer.text
    assert not any(c.startswith("synthjobs_session=") for c in answer.headers.get_list("set-cookie"))
    assert browser.get("/ui/jobs", follow_redirects=False).status_code == 303, "no session was made"


def test_state_changing_forms_need_the_sessions_csrf_token(api: TestClient, token: str) -> None:
    browser = _browser(api)
    _login(browser, token)
    job = api.post(
        "/v1/jobs/train", json={"dataset": "digits"}, headers={"Authorization": f"Bearer {token}"}
    ).json()
    for csrf in (None, "0" * 64):
        data = {} if csrf is None else {"csrf": csrf}
        refused = browser.post(f"/ui/jobs/{job['id']}/cancel", data=data, follow_redirects=False)
        assert refused.status_code == 403, refused.text
    assert api.get(f"/v1/jobs/{job['id']}", headers={"Authorization": f"Bearer {token}"}).json()["state"] == (
        "QUEUED"
    )
    done = browser.post(f"/ui/jobs/{job['id']}/cancel", data={"csrf": _csrf(browser)}, follow_redirects=False)
    assert done.status_code == 303
    assert api.get(f"/v1/jobs/{job['id']}", headers={"Authorization": f"Bearer {token}"}).json()["state"] == (
        "CANCELLED"
    )


def test_logout_clears_the_session(api: TestClient, token: str) -> None:
    browser = _browser(api)
    _login(browser, token)
    answer = browser.post("/ui/logout", data={"csrf": _csrf(browser)}, follow_redirects=False)
    assert answer.status_code == 303 and 'synthjobs_session=""' in answer.headers["set-cookie"]
    assert browser.get("/ui/jobs", follow_redirects=False).status_code == 303


def test_revoking_the_api_token_ends_its_dashboard_sessions(
    api: TestClient, token: str, ledger_url: Callable[[TestClient], str]
) -> None:
    browser = _browser(api)
    _login(browser, token)
    assert browser.get("/ui/jobs", follow_redirects=False).status_code == 200
    with session_scope(ledger_url(api)) as session:
        assert revoke_token(session, token)
    assert browser.get("/ui/jobs", follow_redirects=False).status_code == 303


def test_a_production_api_without_a_ui_secret_serves_no_login(make_api: ApiFactory) -> None:
    api = make_api(ui_secret=None)
    api.app.state.ui_signer = None  # what create_app builds in production without SYNTHJOBS_UI_SECRET
    answer = _browser(api).post("/ui/login", data={"token": "any"})
    assert answer.status_code == 503 and "SYNTHJOBS_UI_SECRET" in answer.text


def test_bad_filters_are_a_readable_422_page(api: TestClient, token: str) -> None:
    browser = _browser(api)
    _login(browser, token)
    for query in ("state=DONE", "kind=nope", "cursor=%%%"):
        answer = browser.get(f"/ui/jobs?{query}")
        assert answer.status_code == 422 and "<h1>422</h1>" in answer.text, query
