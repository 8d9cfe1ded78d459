"""The dashboard page: static HTML and JavaScript that call the API with the key the user
enters once (kept in the browser's session storage). Plotly's script comes from the plotly
wheel, served here: no CDN, works offline."""
from __future__ import annotations

from pathlib import Path

import plotly
from flask import Blueprint, Response, send_from_directory

blp = Blueprint("dashboard", __name__, static_folder="static/dashboard",
                static_url_path="/static/dashboard", template_folder="templates")

PLOTLY_DIR = Path(plotly.__file__).parent / "package_data"


@blp.get("/dashboard")
def page() -> Response:
    response = send_from_directory(Path(__file__).parent / "templates", "dashboard.html")
    # The page runs only its own scripts, and talks only to this server.
    response.headers["Content-Security-Policy"] = (
        "default-src 'self'; script-src 'self' 'unsafe-eval'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; connect-src 'self'"
    )
    return response


@blp.get("/static/vendor/plotly.min.js")
def plotly_script() -> Response:
    return send_from_directory(PLOTLY_DIR, "plotly.min.js", max_age=86400)


@blp.get("/favicon.ico")
def favicon() -> Response:
    return Response(status=204)  # browsers ask; nothing to show, and no 401 in their console
