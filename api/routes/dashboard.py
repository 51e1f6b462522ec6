"""The programme lead's dashboard: a static page at `/` that reads `/v1/stats` with the lead's token.

Three files, served as they are (no build step, no template): `index.html`, `dashboard.js`, `dashboard.css`.
The page loads nothing from elsewhere, and its Content-Security-Policy says so, so it works without network
access and a compromised figure (say, an organisation's name) cannot run script.
"""
from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import Response

from api.errors import ApiError

router = APIRouter(tags=["dashboard"])

DASHBOARD_DIR = Path(__file__).resolve().parent.parent / "dashboard"
ASSETS = {
    "dashboard.js": "text/javascript; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
}
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def _file(name: str, media_type: str) -> Response:
    return Response((DASHBOARD_DIR / name).read_bytes(), media_type=media_type, headers=HEADERS)


@router.get("/", include_in_schema=False)
def dashboard_page() -> Response:
    return _file("index.html", "text/html; charset=utf-8")


@router.get("/dashboard/{asset}", include_in_schema=False)
def dashboard_asset(asset: str) -> Response:
    media_type = ASSETS.get(asset)
    if media_type is None:
        raise ApiError(404, "not_found", f"no such dashboard file: {asset}")
    return _file(asset, media_type)
