"""The web dashboard at /ui (issue 14): server-rendered pages, a session cookie, CSRF-checked forms."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from api.ui.routes import router
from api.ui.session import SessionSigner, ui_secret
from synthjobs.settings import Settings

STATIC = Path(__file__).resolve().parent.parent / "static"


def install_ui(app: FastAPI, settings: Settings) -> None:
    """Serve the dashboard from `app`: its pages, its static files and the session signer."""
    secret = ui_secret(settings)
    app.state.ui_signer = None if secret is None else SessionSigner(secret, settings.ui_session_hours * 3600)
    app.include_router(router)
    app.mount("/ui/static", StaticFiles(directory=STATIC), name="ui-static")
