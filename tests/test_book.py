"""The book's shape: every chapter committed executed, small, listed, and runnable on Colab."""

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "book").glob("*.ipynb"))


def _repository(key: str) -> str:
    text = (ROOT / "_config.yml").read_text()
    match = re.search(rf"^repository:\s*\n(?:\s+.*\n)*?\s+{key}:\s*(\S+)", text, re.M)
    assert match, f"repository.{key} missing from _config.yml"
    return match.group(1).rstrip("/")


def _config_url() -> str:
    return _repository("url")


def _toc_files() -> list[str]:
    return re.findall(
        r"^\s*(?:-\s*)?(?:root|file):\s*(\S+)", (ROOT / "_toc.yml").read_text(), re.M
    )


def test_toc_lists_exactly_the_existing_chapters():
    """Every _toc.yml entry exists, and every notebook in book/ is listed."""
    entries = _toc_files()
    assert entries[0] == "book/intro"
    for entry in entries:
        assert any((ROOT / f"{entry}{ext}").exists() for ext in (".md", ".ipynb")), (
            entry
        )
    assert {f"book/{nb.stem}" for nb in NOTEBOOKS} <= set(entries)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_committed_executed_small_and_clean(path):
    """Executed top to bottom, no error outputs, under 3 MB, nbval tags rather than comments."""
    nb = json.loads(path.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    counts = [c["execution_count"] for c in code]
    assert all(n is not None for n in counts), "some code cells were never executed"
    assert counts == sorted(counts), "cells were not executed top to bottom"
    assert not [
        o for c in code for o in c.get("outputs", []) if o["output_type"] == "error"
    ]
    assert path.stat().st_size < 3e6
    assert not any("# NBVAL" in "".join(c["source"]) for c in code), (
        "use cell tags, not # NBVAL comments"
    )
    assert any(
        "nbval-check-output" in c.get("metadata", {}).get("tags", []) for c in code
    )


def _uses_widgets(nb) -> bool:
    code = "".join(
        "".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"
    )
    return "pendulum_explorer(" in code or "import ipywidgets" in code


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_first_cell_installs_the_configured_release_on_colab(path):
    """The setup cell installs repository.url at repository.release on Colab,
    pins the JAX already there, and asks for Colab's widget manager exactly
    in the chapters that show ipywidgets."""
    nb = json.loads(path.read_text())
    first = "".join(next(c for c in nb["cells"] if c["cell_type"] == "code")["source"])
    assert '"google.colab" in sys.modules' in first
    assert f'"sacbook @ git+{_config_url()}@{_repository("release")}"' in first
    assert "KEEP_JAX = f\"jax=={importlib.metadata.version('jax')}\"" in first
    assert '%pip install -q "{SACBOOK}" "{KEEP_JAX}"' in first
    assert "enable_custom_widget_manager" not in first  # sacbook.notebook decides
    widgets = "widgets=True" in first
    assert widgets == _uses_widgets(nb), (
        "widgets=True exactly where ipywidgets are shown"
    )
    assert ("wants_accelerator=True" in first) == (path.stem == "04_gpu_scaling")


def test_release_tag_matches_the_package_version():
    """The release the chapters install is the version this checkout holds."""
    import sacbook

    assert _repository("release") == f"v{sacbook.__version__}"


def test_readme_points_at_the_configured_repository():
    """README's Colab link uses the configured repository (scripts/set_repo_url.py keeps it so)."""
    owner_repo = _config_url().removeprefix("https://github.com/")
    assert (
        f"colab.research.google.com/github/{owner_repo}/"
        in (ROOT / "README.md").read_text()
    )
