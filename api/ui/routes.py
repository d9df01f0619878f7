"""The dashboard at /ui: jobs, models and schedules as server-rendered pages over the same ledger reads.

State-changing forms call the JSON API's own route functions (cancel, rollback, pause/resume) with the
session's tenant, so the dashboard can do nothing the API would refuse that tenant. Every form answers with
a redirect (post/redirect/get) and carries the session's CSRF token.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import quote, urlencode
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Form, HTTPException, Query, Request, Response

from api.deps import SessionDep, SettingsDep, StorageDep
from api.routes import artifacts as artifact_routes
from api.routes import jobs as job_routes
from api.routes import models as model_routes
from api.routes import schedules as schedule_routes
from api.schemas import SchedulePatch
from api.submit import job_out
from api.ui.chart import epoch_points, loss_chart_svg
from api.ui.deps import FormViewerDep, PageRoute, SignerDep, ViewerDep, render
from api.ui.figures import FidelityTable, fidelity_source, fidelity_table
from api.ui.session import COOKIE, LOGIN_COOKIE, SessionSigner
from synthjobs.errors import ModelNotFound
from synthjobs.ledger import jobs, registry, schedules, shards
from synthjobs.ledger.registry import ALIAS_PATTERN, MODEL_NAME_PATTERN
from synthjobs.ledger.tables import JobState
from synthjobs.ledger.tokens import hash_token, tenant_for_token
from synthjobs.rules import kinds

router = APIRouter(prefix="/ui", route_class=PageRoute, include_in_schema=False)
TERMINAL = {JobState.SUCCEEDED.value, JobState.FAILED.value, JobState.CANCELLED.value}
PAGE_SIZE = 25
MANIFEST_BYTES = 64 * 1024  # shown inline up to this size; a link otherwise
LOGIN_PATH = "/ui/login"
LOGIN_FORM_SECONDS = 3600  # how long a login form stays usable


def _back(path: str, notice: str | None = None) -> Response:
    location = path + (f"?notice={quote(notice)}" if notice else "")
    return Response(status_code=303, headers={"Location": location})


@router.get("")
def show_home() -> Response:
    """The dashboard's front page is the jobs list."""
    return _back("/ui/jobs")


@router.get("/login")
def show_login(
    request: Request, signer: SignerDep, notice: Annotated[str | None, Query(max_length=200)] = None
) -> Response:
    """The login form: paste an API token (the form carries a CSRF token bound to a pre-session cookie)."""
    return _login_page(request, signer, notice=notice)


@router.post("/login")
def log_in(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    signer: SignerDep,
    token: Annotated[str, Form(max_length=500)] = "",
    csrf: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    """Exchange an API token for a session cookie (the cookie keeps the token's hash, not the token).

    403 without the login form's CSRF token: another site cannot log a browser in as someone else.
    """
    if not signer.login_csrf_valid(request.cookies.get(LOGIN_COOKIE), csrf):
        notice = "The login form expired or did not come from this site (CSRF check failed); try again."
        return _login_page(request, signer, 403, notice=notice)
    token = token.strip()
    if not token or tenant_for_token(session, token, settings) is None:
        return _login_page(request, signer, 401, notice="That token is unknown or revoked.")
    response = _back("/ui/jobs")
    response.set_cookie(
        COOKIE,
        signer.new_cookie(hash_token(token)),
        max_age=int(settings.ui_session_hours * 3600),
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
        path="/ui",
    )
    response.delete_cookie(LOGIN_COOKIE, path=LOGIN_PATH, httponly=True, samesite="lax")
    return response


def _login_page(
    request: Request, signer: SessionSigner, status_code: int = 200, notice: str | None = None
) -> Response:
    """The login form with a fresh pre-session cookie and the CSRF token bound to it."""
    nonce = signer.login_nonce()
    csrf = signer.login_csrf_token(nonce)
    response = render(request, "login.html", status_code, notice=notice, login_csrf=csrf)
    response.set_cookie(
        LOGIN_COOKIE,
        nonce,
        max_age=LOGIN_FORM_SECONDS,
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
        path=LOGIN_PATH,
    )
    return response


@router.post("/logout")
def log_out(viewer: FormViewerDep) -> Response:
    """Clear the session cookie."""
    response = _back("/ui/login", "Logged out.")
    response.delete_cookie(COOKIE, path="/ui", httponly=True, samesite="lax")
    return response


# --- jobs ------------------------------------------------------------------------------------------------


@router.get("/jobs")
def show_jobs(
    request: Request,
    session: SessionDep,
    viewer: ViewerDep,
    kind: Annotated[str | None, Query(max_length=16)] = None,
    state: Annotated[str | None, Query(max_length=16)] = None,
    model: Annotated[str | None, Query(max_length=100)] = None,
    schedule: Annotated[str | None, Query(max_length=36)] = None,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    notice: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:
    """The tenant's jobs, newest first, filtered by kind, state, model name or schedule; paginated."""
    kind, state, model, schedule = kind or None, state or None, model or None, schedule or None
    if kind is not None and kind not in kinds.kind_names():
        raise HTTPException(422, f"unknown job kind {kind!r}; one of {', '.join(kinds.kind_names())}")
    if state is not None and state not in {s.value for s in JobState}:
        raise HTTPException(422, f"unknown state {state!r}; one of {', '.join(s.value for s in JobState)}")
    model_ids = None
    if model is not None:
        model_ids = [m.id for m in registry.list_models(session, name=model, limit=500, tenant=viewer.tenant)]
    job_ids = None
    if schedule is not None:
        runs = schedules.list_runs(session, schedule, tenant=viewer.tenant, limit=500)  # 404 for another's
        job_ids = [i for run in runs for i in (run.job_id, run.sample_job_id) if i]
    try:
        page, next_cursor = jobs.list_jobs(
            session,
            state=JobState(state) if state else None,
            kind=kind,
            limit=PAGE_SIZE,
            cursor=cursor,
            tenant=viewer.tenant,
            model_ids=model_ids,
            job_ids=job_ids,
        )
    except ValueError as exc:
        raise HTTPException(422, f"bad cursor: {exc}") from exc
    filters = {"kind": kind, "state": state, "model": model, "schedule": schedule}
    next_url = None
    if next_cursor:
        next_url = "/ui/jobs?" + urlencode({**{k: v for k, v in filters.items() if v}, "cursor": next_cursor})
    return render(
        request,
        "jobs.html",
        viewer=viewer,
        jobs=[job_out(job) for job in page],
        filters=filters,
        kinds=kinds.kind_names(),
        states=[s.value for s in JobState],
        next_url=next_url,
        live=any(job.state not in TERMINAL for job in page),
        notice=notice,
    )


def _live_context(session: SessionDep, job_id: str, tenant: str) -> dict[str, Any]:
    """What changes while a job runs: state, progress, loss chart, timeline, shards."""
    job = jobs.get_job(session, job_id, tenant=tenant)
    events = jobs.list_events(session, job_id, tenant=tenant)
    points = epoch_points(events)
    return {
        "job": job_out(job),
        "events": events,
        "points": points,
        "chart": loss_chart_svg(points),
        "shards": shards.list_shards(session, job_id) if kinds.is_sharded(job.kind) else [],
        "terminal": job.state in TERMINAL,
    }


def _manifest(storage: StorageDep, result: dict[str, Any] | None) -> str | None:
    """The job's manifest, pretty-printed, when it is small enough to show inline."""
    uri = (result or {}).get("manifest_uri")
    if not isinstance(uri, str):
        return None
    try:
        data = storage.get_bytes(uri if "://" not in uri else storage.key_of(uri))  # shown keys are keys
        if len(data) > MANIFEST_BYTES:
            return None
        return json.dumps(json.loads(data), indent=2)
    except Exception:  # noqa: BLE001 - the page shows its download link instead
        return None


@router.get("/jobs/{job_id}")
def show_job(
    job_id: str,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    storage: StorageDep,
    viewer: ViewerDep,
    notice: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:
    """One job: timeline, phase, progress, loss chart, figures, shards, manifest, downloads, cancel."""
    live = _live_context(session, job_id, viewer.tenant)
    links = artifact_routes.list_artifacts(job_id, request, session, settings, storage, viewer.tenant)
    result = live["job"].result or {}
    return render(
        request,
        "job.html",
        viewer=viewer,
        **live,
        artifacts=links,
        images=[a for a in links if a.name.lower().endswith(".png")],
        figures=_figures(result),
        fidelity=_fidelity(session, result, viewer.tenant),
        manifest=_manifest(storage, result),
        params=json.dumps(live["job"].params, indent=2, default=str),
        notice=notice,
    )


def _figures(result: dict[str, Any]) -> dict[str, Any]:
    """The result's figure groups shown as name/value tables; fidelity has a table of its own."""
    shown = {k: v for k, v in result.items() if k in {"quality", "privacy", "metrics"}}
    if isinstance(shown.get("metrics"), dict):
        skip = {"fidelity", "conditional_accuracy_per_class"}
        shown["metrics"] = {k: v for k, v in shown["metrics"].items() if k not in skip}
    return shown


def _fidelity(session: SessionDep, result: dict[str, Any], tenant: str) -> FidelityTable | None:
    """The per-class fidelity table, classes named from the sampling result or the trained model."""
    metrics = result.get("metrics")
    accuracy = metrics.get("conditional_accuracy_per_class") if isinstance(metrics, dict) else None
    names: list[str] = []
    if isinstance(result.get("per_class"), dict):  # a sampling job: counts by class name, in class order
        names = [str(name) for name in result["per_class"]]
    elif isinstance(result.get("model_id"), str):
        try:
            model = registry.get_model(session, result["model_id"], tenant=tenant)
            names = [str(name) for name in (model.dataset or {}).get("class_names") or []]
        except ModelNotFound:
            pass
    return fidelity_table(fidelity_source(result), names, accuracy if isinstance(accuracy, dict) else None)


@router.get("/jobs/{job_id}/live")
def show_job_live(job_id: str, request: Request, session: SessionDep, viewer: ViewerDep) -> Response:
    """The part of a job page that changes while it runs (polled by ui.js)."""
    return render(request, "_job_live.html", viewer=viewer, **_live_context(session, job_id, viewer.tenant))


@router.post("/jobs/{job_id}/cancel")
def cancel_job(job_id: str, session: SessionDep, viewer: FormViewerDep) -> Response:
    """Cancel a queued or running job (the API's cancel, as the session's tenant)."""
    job_routes.cancel_job(job_id, session, viewer.tenant)
    return _back(f"/ui/jobs/{job_id}", "Cancel requested.")


# --- models ----------------------------------------------------------------------------------------------


@router.get("/models")
def show_models(request: Request, session: SessionDep, viewer: ViewerDep) -> Response:
    """Model names with their newest version and aliases."""
    names: dict[str, list[Any]] = {}
    for model in registry.list_models(session, limit=500, tenant=viewer.tenant):
        names.setdefault(model.name, []).append(model)
    return render(request, "models.html", viewer=viewer, names=names)


@router.get("/models/{name}")
def show_model(
    name: str,
    request: Request,
    session: SessionDep,
    viewer: ViewerDep,
    notice: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:
    """The versions of a name side by side, its aliases with history and rollback, promotion decisions."""
    versions = registry.list_models(session, name=name, limit=50, tenant=viewer.tenant)
    if not versions:
        raise HTTPException(404, f"no model named {name!r}")
    aliases: dict[str, Any] = {}
    for model in versions:
        for alias in registry.aliases_of(session, model.id):
            history = registry.alias_history(session, name, alias, tenant=viewer.tenant)
            aliases[alias] = {"model": model, "history": history}
    by_id = {m.id: m for m in versions}
    metric_names = sorted({k for m in versions for k, v in m.metrics.items() if isinstance(v, int | float)})
    param_names = sorted({k for m in versions for k in m.hyperparameters})
    return render(
        request,
        "model.html",
        viewer=viewer,
        name=name,
        versions=versions,
        aliases=aliases,
        by_id=by_id,
        metric_names=metric_names,
        param_names=param_names,
        decisions=schedules.decisions_for_model(session, name, tenant=viewer.tenant),
        notice=notice,
    )


@router.post("/models/{name}/aliases/{alias}/rollback")
def roll_back_alias(name: str, alias: str, session: SessionDep, viewer: FormViewerDep) -> Response:
    """Point an alias back at its previous version (the API's rollback, as the session's tenant)."""
    if not (registry_match(MODEL_NAME_PATTERN, name) and registry_match(ALIAS_PATTERN, alias)):
        raise HTTPException(404, "no such alias")
    try:
        out = model_routes.roll_back_alias(name, alias, session, viewer.tenant)
    except HTTPException as exc:
        if exc.status_code != 409:
            raise
        return _back(f"/ui/models/{quote(name)}", str(exc.detail))
    return _back(f"/ui/models/{quote(name)}", f"{name}@{alias} now points at version {out.version}.")


def registry_match(pattern: str, value: str) -> bool:
    return re.fullmatch(pattern, value) is not None


# --- schedules -------------------------------------------------------------------------------------------


def _in_zone(moment: datetime | None, zone: str) -> str:
    if moment is None:
        return "-"
    return moment.astimezone(ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M %Z")


@router.get("/schedules")
def show_schedules(
    request: Request,
    session: SessionDep,
    viewer: ViewerDep,
    notice: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:
    """Schedules with their next due time in their own zone, recent runs with decisions, pause/resume."""
    rows = []
    for schedule in schedules.list_schedules(session, tenant=viewer.tenant):
        runs = schedules.list_runs(session, schedule.id, tenant=viewer.tenant, limit=10)
        rows.append(
            {
                "schedule": schedule,
                "next_due": _in_zone(schedule.next_due_at, schedule.timezone),
                "runs": [(run, _in_zone(run.due_at, schedule.timezone)) for run in runs],
            }
        )
    return render(request, "schedules.html", viewer=viewer, rows=rows, notice=notice)


def _set_paused(
    schedule_id: str, paused: bool, session: SessionDep, settings: SettingsDep, tenant: str
) -> None:
    schedule_routes.update_schedule(schedule_id, SchedulePatch(paused=paused), session, settings, tenant)


@router.post("/schedules/{schedule_id}/pause")
def pause_schedule(
    schedule_id: str, session: SessionDep, settings: SettingsDep, viewer: FormViewerDep
) -> Response:
    """Pause a schedule: it fires no more until resumed."""
    _set_paused(schedule_id, True, session, settings, viewer.tenant)
    return _back("/ui/schedules", "Schedule paused.")


@router.post("/schedules/{schedule_id}/resume")
def resume_schedule(
    schedule_id: str, session: SessionDep, settings: SettingsDep, viewer: FormViewerDep
) -> Response:
    """Resume a schedule from its next due time after now."""
    _set_paused(schedule_id, False, session, settings, viewer.tenant)
    return _back("/ui/schedules", "Schedule resumed.")
