"""What every dashboard page needs: the logged-in tenant, CSRF checks, templates and HTML error pages."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, Form, HTTPException, Request, Response
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates

from api.deps import SessionDep, SettingsDep
from api.errors import STATUS_FOR
from api.ui.session import COOKIE, SessionSigner, UiSession
from synthjobs.errors import SynthJobsError
from synthjobs.ledger.tokens import tenant_for_token_hash

TEMPLATES = Jinja2Templates(directory=Path(__file__).resolve().parent.parent / "templates")


class LoginRequired(Exception):
    """No valid session: pages redirect to the login form (raised, so every dependency can stop a page)."""


@dataclass(frozen=True)
class Viewer:
    """The logged-in tenant of a dashboard request and the CSRF token its forms carry."""

    tenant: str
    session: UiSession
    csrf: str


def get_signer(request: Request) -> SessionSigner:
    signer: SessionSigner | None = request.app.state.ui_signer
    if signer is None:
        raise HTTPException(503, "the dashboard needs SYNTHJOBS_UI_SECRET (shared by every API process)")
    return signer


SignerDep = Annotated[SessionSigner, Depends(get_signer)]


def get_viewer(request: Request, session: SessionDep, settings: SettingsDep, signer: SignerDep) -> Viewer:
    """The tenant of the session cookie, checked against the tokens table on every request."""
    ui_session = signer.read_cookie(request.cookies.get(COOKIE))
    if ui_session is None:
        raise LoginRequired
    tenant = tenant_for_token_hash(session, ui_session.token_sha256, settings)
    if tenant is None:  # the API token was revoked since the login
        raise LoginRequired
    return Viewer(tenant=tenant, session=ui_session, csrf=signer.csrf_token(ui_session))


ViewerDep = Annotated[Viewer, Depends(get_viewer)]


def checked_viewer(
    viewer: ViewerDep, signer: SignerDep, csrf: Annotated[str, Form(max_length=200)] = ""
) -> Viewer:
    """`get_viewer` for a state-changing form: 403 unless it carries this session's CSRF token."""
    if not signer.csrf_valid(viewer.session, csrf):
        raise HTTPException(403, "the form's CSRF token is missing or wrong; reload the page and try again")
    return viewer


FormViewerDep = Annotated[Viewer, Depends(checked_viewer)]


def render(request: Request, template: str, status_code: int = 200, **context: Any) -> Response:
    return TEMPLATES.TemplateResponse(request, template, context, status_code=status_code)


class PageRoute(APIRoute):
    """Dashboard pages answer errors as HTML pages (404 for another tenant's object, as in the API)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                return await handler(request)
            except LoginRequired:
                return Response(status_code=303, headers={"Location": "/ui/login"})
            except SynthJobsError as exc:
                status = STATUS_FOR.get(type(exc))
                if status is None:
                    raise
                return render(request, "error.html", status, status=status, message=str(exc))
            except HTTPException as exc:
                return render(
                    request, "error.html", exc.status_code, status=exc.status_code, message=exc.detail
                )

        return handle
