"""The lock files pin every dependency that pyproject.toml declares (a fresh machine installs what CI tested)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_NAME = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)")


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pinned(lock: Path) -> dict[str, str]:
    pins = {}
    for line in lock.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^ ;\\]+)", line)
        if match:
            pins[_normalise(match[1])] = match[2]
    return pins


def _declared(requirements: list[str]) -> set[str]:
    names = set()
    for requirement in requirements:
        match = _NAME.match(requirement)
        assert match, requirement
        names.add(_normalise(match[1]))
    return names


def test_every_dependency_is_pinned_with_hashes() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    app = _pinned(ROOT / "requirements/app.lock")
    test = _pinned(ROOT / "requirements/test.lock")
    assert _declared(project["dependencies"]) - app.keys() == set(), "run scripts/lock"
    assert (
        _declared(project["dependencies"] + project["optional-dependencies"]["test"]) - test.keys() == set()
    )
    for lock in ("app.lock", "test.lock"):
        text = (ROOT / "requirements" / lock).read_text()
        assert text.count("==") <= text.count("--hash=sha256:"), f"{lock}: every pin carries a hash"


def test_app_and_test_locks_agree_on_shared_packages() -> None:
    app = _pinned(ROOT / "requirements/app.lock")
    test = _pinned(ROOT / "requirements/test.lock")
    differing = {name: (version, test[name]) for name, version in app.items() if test.get(name) != version}
    assert differing == {}, "the app runs with other versions than the tests ran with: run scripts/lock"
