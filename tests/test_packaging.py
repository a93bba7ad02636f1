"""sacbook installs on Google Colab without replacing what Colab preinstalls.

Fast check of pyproject.toml against .ci/colab-constraints.txt (Colab's
versions); .ci/colab_stack.sh is the slow, full check (a pip dry run on that
stack, then the whole test suite there).
"""

from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

try:
    import tomllib
except ImportError:  # Python 3.10: pytest depends on tomli there
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
COLAB_PYTHON = "3.12"


def _pins(file: str = "colab-constraints.txt") -> dict[str, Version]:
    """The exact pins of a constraints file in .ci/."""
    pins = {}
    for line in (ROOT / ".ci" / file).read_text().splitlines():
        line = line.split("#")[0].strip()
        if not line:
            continue
        name, sep, version = line.partition("==")
        assert sep, f"not an exact pin in {file}: {line!r}"
        pins[canonicalize_name(name)] = Version(version.strip())
    return pins


def _colab_pins() -> dict[str, Version]:
    return _pins()


def _project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _requirements() -> list[tuple[str, Requirement]]:
    """(group, requirement) for the core dependencies and every extra."""
    project = _project()
    reqs = [("dependencies", Requirement(r)) for r in project["dependencies"]]
    for extra, items in project.get("optional-dependencies", {}).items():
        reqs += [(f"[{extra}]", Requirement(r)) for r in items]
    return reqs


def _on_colab(group: str, req: Requirement) -> bool:
    if req.marker is None:
        return True
    extra = group.strip("[]") if group.startswith("[") else ""
    return req.marker.evaluate(
        {
            "python_version": COLAB_PYTHON,
            "python_full_version": f"{COLAB_PYTHON}.0",
            "sys_platform": "linux",
            "platform_system": "Linux",
            "extra": extra,
        }
    )


PINNED = [
    (group, req)
    for group, req in _requirements()
    if canonicalize_name(req.name) in _colab_pins() and _on_colab(group, req)
]


@pytest.mark.parametrize("group,req", PINNED, ids=[f"{g}:{r}" for g, r in PINNED])
def test_floor_at_or_below_colab(group, req):
    """Every floor is at or below Colab's version, and Colab's version satisfies
    the whole specifier, so pip keeps what Colab has instead of replacing it."""
    colab = _colab_pins()[canonicalize_name(req.name)]
    floors = [
        Version(s.version)
        for s in req.specifier
        if s.operator in (">=", ">", "==", "~=", "===")
    ]
    for floor in floors:
        assert floor <= colab, (
            f"{group}: {req} has a floor above Colab's {req.name} {colab}"
        )
    assert req.specifier.contains(colab, prereleases=True), (
        f"{group}: {req} excludes Colab's {req.name} {colab} (.ci/colab-constraints.txt)"
    )


def test_the_check_covers_the_stack_colab_preinstalls():
    """The check above is not vacuous: it covers the packages whose upgrade
    breaks a Colab runtime, and the test extra's kernel and test tools."""
    checked = {(group, canonicalize_name(req.name)) for group, req in PINNED}
    for name in ("jax", "flax", "numpy", "ipython", "ipywidgets"):
        assert ("dependencies", name) in checked, name
    for name in ("ipykernel", "pytest", "gymnasium"):
        assert ("[test]", name) in checked, name


def test_the_floors_pass_installs_the_declared_floors():
    """.ci/floor-constraints.txt (CI's floors pass) pins every dependency at
    the floor pyproject.toml declares, and nothing else: the oldest stack a
    user may have is the one the tests run on."""
    pins = _pins("floor-constraints.txt")
    floors = {}
    for req in map(Requirement, _project()["dependencies"]):
        lowest = [Version(s.version) for s in req.specifier if s.operator == ">="]
        if lowest:
            floors[canonicalize_name(req.name)] = max(lowest)
    floors["jaxlib"] = floors["jax"]  # jax's own floor for jaxlib is its version
    assert pins == floors


def test_requires_python_admits_colabs_python():
    from packaging.specifiers import SpecifierSet

    assert SpecifierSet(_project()["requires-python"]).contains(f"{COLAB_PYTHON}.0")


def test_package_version_is_one_number():
    """pyproject.toml's version is sacbook.__version__ (the release tag's)."""
    import tomllib

    import sacbook

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["version"] == sacbook.__version__
