"""requirements.lock stays the lock of pyproject.toml: every pin there is locked at the same version,
with hashes, and setup.sh, the Dockerfile and CI install from it."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_every_pin_is_locked_with_hashes():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = [*project["dependencies"], *(d for extra in project["optional-dependencies"].values() for d in extra)]
    wanted = {}
    for pin in pins:
        m = re.fullmatch(r"([A-Za-z0-9_.-]+)(\[[^]]*\])?==([^;\s]+)", pin)
        assert m, f"not an exact pin: {pin}"
        wanted[norm(m.group(1))] = m.group(3)
    text = (ROOT / "requirements.lock").read_text()
    locked = {norm(m.group(1)): m.group(2) for m in re.finditer(r"^([A-Za-z0-9_.-]+)==(\S+) \\$", text, re.M)}
    assert {name: locked.get(name) for name in wanted} == wanted
    blocks = re.split(r"^(?=[A-Za-z0-9_.-]+==)", text, flags=re.M)[1:]
    assert len(blocks) == len(locked) and all("--hash=sha256:" in b for b in blocks)


def test_installers_use_the_lock():
    assert "pip install -q --require-hashes -r requirements.lock" in (ROOT / "scripts/setup.sh").read_text()
    assert "pip install --no-cache-dir --require-hashes -r requirements.lock" in (ROOT / "Dockerfile").read_text()
    assert "scripts/setup.sh" in (ROOT / ".ci/run").read_text()
