"""A small client for the Confluent-compatible schema registry API (what Apicurio serves at /apis/ccompat/v7).

confluent_kafka's client needs httpx and authlib besides; the five calls we make fit in requests.
"""

from __future__ import annotations

import json
from typing import Any

import requests

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"


class RegistryError(RuntimeError):
    def __init__(self, status: int, message: str):
        super().__init__(f"schema registry answered {status}: {message}")
        self.status = status


class RegistryClient:
    def __init__(self, url: str, timeout: float = 10.0, auth: dict[str, str] | None = None):
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.session = requests.Session()
        self.session.headers["Content-Type"] = CONTENT_TYPE
        self.session.headers.update(auth or {})  # basic or bearer (Settings.registry_auth)

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        r = self.session.request(method, self.url + path, data=None if body is None else json.dumps(body),
                                 timeout=self.timeout)
        if r.status_code >= 400:
            try:
                message = r.json().get("message", r.text)
            except ValueError:
                message = r.text
            raise RegistryError(r.status_code, message)
        return r.json() if r.content else None

    def register(self, subject: str, schema: str) -> int:
        return int(self._call("POST", f"/subjects/{subject}/versions", {"schema": schema, "schemaType": "AVRO"})["id"])

    def schema_by_id(self, schema_id: int) -> str:
        return self._call("GET", f"/schemas/ids/{schema_id}")["schema"]

    def versions(self, subject: str) -> list[int]:
        return self._call("GET", f"/subjects/{subject}/versions")

    def is_compatible(self, subject: str, schema: str, version: str = "latest") -> bool:
        body = {"schema": schema, "schemaType": "AVRO"}
        return bool(self._call("POST", f"/compatibility/subjects/{subject}/versions/{version}", body)["is_compatible"])

    def set_compatibility(self, level: str, subject: str | None = None) -> None:
        """Set the rule for one subject, or the global default when no subject is given."""
        self._call("PUT", f"/config/{subject}" if subject else "/config", {"compatibility": level})

    def compatibility(self, subject: str | None = None) -> str:
        body = self._call("GET", f"/config/{subject}" if subject else "/config")
        return body.get("compatibilityLevel") or body.get("compatibility")

    def delete_subject(self, subject: str) -> None:
        self._call("DELETE", f"/subjects/{subject}")
        try:
            self._call("DELETE", f"/subjects/{subject}?permanent=true")
        except RegistryError:
            pass
