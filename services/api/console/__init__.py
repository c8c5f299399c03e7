"""The web console, served by the API at `/`: sign in with an API key, submit documents, watch jobs and
look at each page beside what the model made of it. Every asset ships in this package (no CDN)."""

from __future__ import annotations

from fastapi import FastAPI

from services.api.console.routes import api_router, console_router


def install(app: FastAPI) -> None:
    """Add the console's JSON routes and its pages; call it after every other route, so that `/` and
    `/console/*` never shadow one."""
    app.include_router(api_router)
    app.include_router(console_router)
