"""Fetching the stack's parts from Maven Central into the cache, once."""

from __future__ import annotations

import shutil
import subprocess
import tarfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from cli.stack._proc import StackError

KAFKA_POM = Path(__file__).with_name("kafka-pom.xml")
KAFKA_TOOLS_POM = Path(__file__).with_name("kafka-tools-pom.xml")
APICURIO_VERSION = "3.0.9"  # 3.1.x is not on Maven Central; 3.2+ needs Java 21


def _maven(args: list[str], cache: Path, what: str, progress: Callable[[str], None]) -> None:
    if shutil.which("mvn") is None:
        raise StackError(f"{what}: Maven (mvn) is not installed; it fetches the jars from Maven Central")
    log = cache / "maven.log"
    cache.mkdir(parents=True, exist_ok=True)
    cmd = ["mvn", "-B", "-q", f"-Dmaven.repo.local={cache / 'm2'}", *args]
    done = threading.Event()

    def ticker() -> None:
        start = time.monotonic()
        while not done.wait(5):
            progress(f"{what}: still downloading ({time.monotonic() - start:.0f}s)")

    threading.Thread(target=ticker, daemon=True).start()
    try:
        with open(log, "ab") as out:
            rc = subprocess.call(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    finally:
        done.set()
    if rc != 0:
        raise StackError(f"{what}: Maven failed (exit {rc}); log: {log}")


def kafka_lib(cache: Path, progress: Callable[[str], None]) -> Path:
    """The directory of Kafka broker jars, downloaded on first use."""
    lib = cache / "kafka" / "lib"
    marker = lib / ".complete"
    if not marker.exists():
        progress("kafka: downloading broker jars from Maven Central")
        shutil.rmtree(lib, ignore_errors=True)
        _maven(["-f", str(KAFKA_POM), "dependency:copy-dependencies", "-DincludeScope=runtime",
                f"-DoutputDirectory={lib}"], cache, "kafka", progress)
        marker.write_text("ok\n")
    return lib


def kafka_version() -> str:
    """The broker's version, as kafka-pom.xml pins it (the tools are fetched at the same one)."""
    import xml.etree.ElementTree as ET

    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    for dep in ET.parse(KAFKA_POM).getroot().iterfind("m:dependencies/m:dependency", ns):
        if dep.findtext("m:artifactId", namespaces=ns) == "kafka_2.13":
            return dep.findtext("m:version", namespaces=ns) or ""
    raise StackError(f"no kafka_2.13 dependency in {KAFKA_POM}")


def kafka_tools_lib(cache: Path, progress: Callable[[str], None]) -> Path:
    """The jars of org.apache.kafka:kafka-tools at the broker's version, downloaded on first use."""
    version = kafka_version()
    lib = cache / "kafka-tools" / version / "lib"
    marker = lib / ".complete"
    if not marker.exists():
        progress(f"kafka tools: downloading kafka-tools {version} from Maven Central")
        shutil.rmtree(lib, ignore_errors=True)
        _maven(["-f", str(KAFKA_TOOLS_POM), "dependency:copy-dependencies", "-DincludeScope=runtime",
                f"-Dkafka.version={version}", f"-DoutputDirectory={lib}"], cache, "kafka tools", progress)
        marker.write_text("ok\n")
    return lib


def apicurio_jar(cache: Path, progress: Callable[[str], None]) -> Path:
    """The Apicurio Registry runner jar, downloaded and unpacked on first use."""
    home = cache / "apicurio" / APICURIO_VERSION
    jar = home / f"apicurio-registry-app-{APICURIO_VERSION}-runner.jar"
    if not jar.exists():
        progress(f"registry: downloading Apicurio Registry {APICURIO_VERSION} from Maven Central")
        _maven(["dependency:copy", f"-Dartifact=io.apicurio:apicurio-registry-app:{APICURIO_VERSION}:tar.gz:all",
                f"-DoutputDirectory={home}"], cache, "registry", progress)
        archive = home / f"apicurio-registry-app-{APICURIO_VERSION}-all.tar.gz"
        with tarfile.open(archive) as tar:
            tar.extractall(home, filter="data")
        archive.unlink()
        if not jar.exists():
            raise StackError(f"registry: {jar.name} not found in the Apicurio archive")
    return jar
