"""Refusals as `application/problem+json` (RFC 9457): one exception type, turned into an answer by
the app's middleware, so a handler can refuse from anywhere with `raise Problem(...)`."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

PROBLEM_TYPE = "application/problem+json"
TITLES = {
    400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 405: "Method Not Allowed",
    406: "Not Acceptable", 408: "Request Timeout", 409: "Conflict", 413: "Content Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Content", 429: "Too Many Requests", 500: "Internal Server Error",
    502: "Bad Gateway", 503: "Service Unavailable",
}


class Problem(Exception):
    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None, **extra: Any):
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers or {}
        self.extra = extra

    def body(self) -> dict:
        return {"type": "about:blank", "title": TITLES.get(self.status, "Error"), "status": self.status,
                "detail": self.detail, **self.extra}

    def response(self) -> web.Response:
        return problem_response(self.status, self.body(), self.headers)


def problem_response(status: int, body: dict, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, body=json.dumps(body).encode(), headers=headers,
                        content_type=PROBLEM_TYPE)


UNAUTHORIZED = "missing or invalid credentials"  # the one answer: no hint which part was wrong


def unauthorized() -> Problem:
    return Problem(401, UNAUTHORIZED)


def not_found(what: str = "no such resource for this credential") -> Problem:
    return Problem(404, what)
