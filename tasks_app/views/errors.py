"""Answers for requests that failed inside the server: 503 while the database is unreachable, 500 otherwise.

Agent-facing paths get their face's JSON shape (an SDK must never have to parse an HTML page);
the dashboard gets a small page. Neither reads the database or the session: the failure may be
the database itself.
"""

import sys

from django.db import Error as DatabaseError
from django.db import OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template import loader
from psycopg_pool import PoolTimeout

JSONRPC_PATH = "/rpc"
API_PREFIXES = ("/api/", "/xpander/", "/agentex/")
RETRY_AFTER_SECONDS = 5


def database_unavailable(exc: BaseException | None) -> bool:
    """The database could not be reached (refused, timed out, pool exhausted), not a bad query."""
    return isinstance(exc, (OperationalError, PoolTimeout)) or (
        isinstance(exc, DatabaseError) and isinstance(exc.__cause__, PoolTimeout)
    )


def is_api_path(path: str) -> bool:
    return path == JSONRPC_PATH or path.startswith(API_PREFIXES)


REFUSALS = {404: "Not Found", 405: "Method Not Allowed"}


def api_error(path: str, status: int, message: str, *, code: str, rpc_code: int, rpc_message: str) -> JsonResponse:
    """An error on an agent-facing path in that face's own shape: a JSON-RPC error object, Agentex's
    `{message, code: <status>, data}`, else `{detail, code}`."""
    if path == JSONRPC_PATH:
        error = {"code": rpc_code, "message": rpc_message, "data": {"reason": message}}
        body: dict = {"jsonrpc": "2.0", "error": error, "id": None}
    elif path.startswith("/agentex/"):
        body = {"message": message, "code": status, "data": {"reason": code}}  # upstream's error body
    else:
        body = {"detail": message, "code": code}
    return JsonResponse(body, status=status)


def api_refusal(path: str, refused: HttpResponse) -> HttpResponse:
    """A 404 or 405 that Django or ninja answered as HTML (no such route, wrong method), on an
    agent-facing path, in that face's own JSON shape; the status and Allow header are kept."""
    status = refused.status_code
    message = "Send JSON-RPC requests with POST." if path == JSONRPC_PATH and status == 405 else REFUSALS[status]
    code = "method_not_allowed" if status == 405 else "not_found"
    response = api_error(path, status, message, code=code, rpc_code=-32600, rpc_message="Invalid Request")
    if refused.has_header("Allow"):
        response["Allow"] = refused["Allow"]
    return response


def server_error(request: HttpRequest) -> HttpResponse:
    """handler500: the exception being handled decides between 503 and 500."""
    unavailable = database_unavailable(sys.exc_info()[1])
    status = 503 if unavailable else 500
    message = (
        "The database is unreachable; try again in a few seconds."
        if unavailable
        else "Something went wrong on our side; it has been logged."
    )
    response: HttpResponse
    if is_api_path(request.path):
        code = "unavailable" if unavailable else "server_error"
        response = api_error(request.path, status, message, code=code, rpc_code=-32603, rpc_message="Internal error")
    else:
        title = "Service unavailable" if unavailable else "Server error"
        body = loader.render_to_string(
            "errors/server_error.html", {"title": title, "message": message, "status": status}
        )
        response = HttpResponse(body, status=status)
    if unavailable:
        response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response
