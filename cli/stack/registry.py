"""Apicurio Registry (Confluent-compatible API at /apis/ccompat/v7), its data kept in the local PostgreSQL."""

from __future__ import annotations

import shutil
from collections.abc import Callable

import requests

from cli.stack import downloads
from cli.stack._proc import Process, StackError, wait_until
from stockledger.config import Settings
from stockledger.registry import RegistryClient


class Registry:
    name = "registry"

    def __init__(self, settings: Settings):
        self.settings = settings
        self.dir = settings.home / "registry"
        self.proc = Process("registry", self.dir)

    def start(self, progress: Callable[[str], None]) -> None:
        if self.proc.pid() is not None:
            return
        jar = downloads.apicurio_jar(self.settings.cache_dir, progress)
        java = shutil.which("java")
        if java is None:
            raise StackError("registry: java not found (Java 17+ is needed)")
        env = {
            "QUARKUS_HTTP_HOST": "127.0.0.1",
            "QUARKUS_HTTP_PORT": str(self.settings.registry_port),
            "QUARKUS_LOG_LEVEL": "WARN",
            "QUARKUS_LOG_CATEGORY__IO_APICURIO__LEVEL": "INFO",
            "APICURIO_STORAGE_KIND": "sql",
            "APICURIO_STORAGE_SQL_KIND": "postgresql",
            "APICURIO_DATASOURCE_URL": self.settings.registry_database_url,
            "APICURIO_DATASOURCE_USERNAME": "postgres",
            "APICURIO_DATASOURCE_PASSWORD": "unused",
            # Confluent clients send schemas as text: keep ids stable and content compared canonically.
            "APICURIO_CCOMPAT_LEGACY_ID_MODE_ENABLED": "true",
            "APICURIO_REST_DELETION_ARTIFACT_ENABLED": "true",
            "APICURIO_REST_DELETION_ARTIFACT_VERSION_ENABLED": "true",
        }
        self.dir.mkdir(parents=True, exist_ok=True)
        self.proc.spawn([java, "-Xmx384m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-jar", str(jar)],
                        env=env, cwd=jar.parent)

    def _ready(self) -> bool:
        r = requests.get(f"{self.settings.schema_registry_url}/subjects", timeout=2)
        return r.status_code == 200

    def wait(self, progress: Callable[[str], None]) -> None:
        wait_until(self._ready, 180, "answering the Confluent-compatible API", self.proc, progress)
        # SPEC: every schema change must be BACKWARD compatible; Apicurio's default is NONE.
        RegistryClient(self.settings.schema_registry_url).set_compatibility("BACKWARD")

    def stop(self) -> bool:
        return self.proc.stop(timeout=30)
