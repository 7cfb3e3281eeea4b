"""constraints.txt pins what the image installs: in step with pyproject.toml and with the tests.

The Dockerfile installs these pins and nothing else, so a runtime dependency missing here, or a
pin below what ``pyproject.toml`` requires, breaks the image rather than the test suite.
``tools/constraints.py`` rewrites the file from the environment the tests run in.
"""

from __future__ import annotations

import importlib.util
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]


def _load_tool():  # type: ignore[no-untyped-def]
    # tools/ is scripts, not a package: load the file itself
    spec = importlib.util.spec_from_file_location(
        "capi_constraints", ROOT / "tools" / "constraints.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


tool = _load_tool()
PINS = tool.parse(tool.CONSTRAINTS.read_text())


def test_every_runtime_dependency_is_pinned() -> None:
    """Each ``[project] dependencies`` entry of pyproject.toml has a pin."""
    missing = [r.name for r in tool.runtime_requirements() if canonicalize_name(r.name) not in PINS]
    assert missing == [], "run .venv/bin/python tools/constraints.py"


def test_each_pin_satisfies_pyproject() -> None:
    """Each pin meets pyproject.toml's bound for it (``confluent-kafka>=2.6`` → 2.6 or later)."""
    for req in tool.runtime_requirements():
        pinned = PINS[canonicalize_name(req.name)]
        assert req.specifier.contains(pinned, prereleases=True), f"{req} but pinned {pinned}"


def test_pins_are_closed_and_consistent() -> None:
    """What each pinned package requires here is pinned too, at a version it accepts.

    This is ``pip check`` on the pins: the image installs them with ``--no-deps`` semantics, so
    a missing or conflicting transitive pin would only show when the container starts.
    """
    problems = []
    for name, version in PINS.items():
        dist = metadata.distribution(name)
        if dist.version != version:
            continue  # reported by test_pins_are_the_versions_under_test
        for line in dist.requires or ():
            req = Requirement(line)
            if req.marker is not None and not req.marker.evaluate({"extra": ""}):
                continue
            dep = canonicalize_name(req.name)
            if dep not in PINS:
                problems.append(f"{name} needs {req}, not pinned")
            elif not req.specifier.contains(PINS[dep], prereleases=True):
                problems.append(f"{name} needs {req}, pinned {PINS[dep]}")
    assert problems == []


def test_pins_are_the_versions_under_test() -> None:
    """Every pin is the version installed where the tests run: the image ships what was tested."""
    differ = {
        name: (version, metadata.version(name))
        for name, version in PINS.items()
        if metadata.version(name) != version
    }
    assert differ == {}, "pinned vs installed; run .venv/bin/python tools/constraints.py"


def test_the_file_is_what_the_tool_writes() -> None:
    """The file is exactly the tool's rendering of its pins: sorted, canonical names, the header."""
    assert tool.render(PINS) == tool.CONSTRAINTS.read_text()
    assert all(Version(v) for v in PINS.values())


def test_the_tool_reports_a_stale_file(tmp_path: Path) -> None:
    """``tools/constraints.py --check`` exits 1 (with a diff) on a stale pin, 0 when current."""
    stale = dict(PINS)
    stale["httpx"] = "0.27.0"
    path = tmp_path / "constraints.txt"
    path.write_text(tool.render(stale))
    assert tool.main(["--check", "--output", str(path)]) == 1
    path.write_text(tool.render(PINS))
    assert tool.main(["--check", "--output", str(path)]) == 0


def test_parse_rejects_what_is_not_a_pin() -> None:
    """A range or a bare name is not a pin: the image would install whatever is newest."""
    with pytest.raises(ValueError, match="not a name==version pin"):
        tool.parse("httpx>=0.27\n")
