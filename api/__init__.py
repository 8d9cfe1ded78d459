"""The CRM / dashboard API: `create_app(settings=None)`."""
from __future__ import annotations

from typing import Any

from flask import Flask, send_from_directory
from swagger_ui_bundle import swagger_ui_path
from flask_smorest import Api

from api import admin, agents, conversations, dashboard, errors, health, ratelimit, timing
from api.auth import authenticate
from api.schemas import ErrorOut
from config.settings import Settings
from conversation.adapters.api_keys import ApiKeyStore
from conversation.bootstrap import Container
from conversation.queries.statement_timeout import with_statement_timeout


class ServiceApi(Api):
    """flask-smorest, with the contract's error body instead of its own (in the document too)."""

    ERROR_SCHEMA = ErrorOut

    def handle_http_exception(self, error: Any) -> Any:
        return errors.handle_http_exception(error)


def create_app(settings: Settings | None = None, container: Container | None = None) -> Flask:
    container = container or Container(settings)
    app = Flask(__name__)
    app.config.update(
        API_TITLE="Conversation service",
        API_VERSION="1",
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/api",
        OPENAPI_JSON_PATH="openapi.json",
        OPENAPI_SWAGGER_UI_PATH="docs",
        OPENAPI_SWAGGER_UI_URL="/static/swagger-ui/",
        JSON_SORT_KEYS=False,
        MAX_CONTENT_LENGTH=1024 * 1024,
    )
    app.extensions["conversation"] = container
    # The routes' reads (container.queries) and every request's key lookup run under the
    # statement timeout; the admin's erasure and export do not.
    app.extensions["conversation_queries"] = container.queries
    app.extensions["api_key_reads"] = ApiKeyStore(
        with_statement_timeout(container.engine, container.settings.api_statement_timeout_ms))
    api = ServiceApi(app)
    api.spec.components.security_scheme(
        "bearer", {"type": "http", "scheme": "bearer", "description": "a tenant's API key"}
    )
    api.spec.options["security"] = [{"bearer": []}]
    api.register_blueprint(conversations.blp)
    api.register_blueprint(agents.blp)
    api.register_blueprint(admin.blp)
    app.register_blueprint(health.blp)
    app.register_blueprint(dashboard.blp)
    # The docs page's scripts come from the swagger-ui-bundle wheel: no CDN, works offline.
    app.add_url_rule(
        "/static/swagger-ui/<path:filename>",
        "swagger_ui_static",
        lambda filename: send_from_directory(swagger_ui_path, filename),
    )
    timing.register(app)
    app.before_request(authenticate)
    ratelimit.init_app(app, container.settings)  # after authenticate: it counts per key
    errors.register(app)
    return app
