"""The book's shape: every chapter committed executed, small, listed, and runnable on Colab."""

import ast
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


def test_colab_launch_opens_the_release_the_setup_cell_installs():
    """Jupyter Book's launch button opens repository.branch: the release tag."""
    assert _repository("branch") == _repository("release")


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


MAX_COLUMNS = 88  # the package's line length; book/_ext/static/sacbook.css fits it


def _text_outputs(cell):
    """The printed text of a code cell's outputs as the book shows it: streams and
    plain text, but not the text fallback of a picture, a widget or an HTML table."""
    for out in cell.get("outputs", []):
        if out["output_type"] == "stream":
            yield "".join(out["text"])
        data = out.get("data", {})
        shown_otherwise = ("image/png", "application/vnd.jupyter.widget-view+json")
        if "text/plain" in data and not any(k in data for k in shown_otherwise):
            if "text/html" in data and "<pre" not in "".join(data["text/html"]):
                continue  # an HTML table or a player: the browser test checks those
            yield "".join(data["text/plain"])


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_code_and_printed_output_fit_88_columns(path):
    """No code line, listing or printed line is wider than the book's code column."""
    nb = json.loads(path.read_text())
    wide = []
    for number, cell in enumerate(nb["cells"]):
        texts = ["".join(cell["source"])]
        if cell["cell_type"] == "markdown":
            texts = re.findall(r"^```[^\n]*\n(.*?)^```", texts[0], re.M | re.S)
        elif cell["cell_type"] == "code":
            texts += list(_text_outputs(cell))
        for text in texts:
            wide += [
                f"cell {number}: {len(line)} columns: {line[:60]}..."
                for line in text.splitlines()
                if len(line) > MAX_COLUMNS
            ]
    assert not wide, "\n".join(wide)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_figure_has_alt_text(path):
    """A code cell that draws a picture says in words what it shows
    (cell metadata ``mystnb: image: alt``), for readers who cannot see it."""
    nb = json.loads(path.read_text())
    missing = [
        f"cell {number} ({cell.get('id')}): {''.join(cell['source'])[:50]!r}"
        for number, cell in enumerate(nb["cells"])
        if cell["cell_type"] == "code"
        and any("image/png" in o.get("data", {}) for o in cell.get("outputs", []))
        and len(str(cell["metadata"].get("mystnb", {}).get("image", {}).get("alt", "")))
        < 20
    ]
    assert not missing, "figures without alt text:\n" + "\n".join(missing)


def test_landing_page_opens_with_the_1024_pendulum_picture():
    """The landing page's first picture is every pendulum of a run (drawn by
    scripts/make_hero.py), with alt text, and the file is there."""
    text = (ROOT / "book" / "intro.md").read_text()
    first = re.search(r"```\{(?:figure|image)\} (\S+)\n((?::\w+:.*\n)*)", text)
    assert first and first.group(1) == "images/hero_1024.png"
    alt = re.search(r"^:alt: (.+)$", first.group(2), re.M)
    assert alt and len(alt.group(1)) > 40
    image = ROOT / "book" / "images" / "hero_1024.png"
    assert image.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert image.stat().st_size < 300_000


def _listed_modules() -> list[str]:
    """The modules sacbook's docstring lists, top floor first (read from the
    file, as tests/test_structure.py reads the imported docstring)."""
    tree = ast.parse((ROOT / "sacbook" / "__init__.py").read_text())
    listing = ast.get_docstring(tree).split("Modules, one concept each")[1]
    return re.findall(r"^  (\w+) +\S", listing, flags=re.MULTILINE)


def test_api_reference_documents_every_module():
    """book/api.md, listed in the table of contents, has an automodule for every
    module the package docstring lists (a new module cannot be forgotten), each
    once, none private, and in the docstring's floor order within each group."""
    assert "book/api" in _toc_files()
    text = (ROOT / "book" / "api.md").read_text()
    modules = _listed_modules()
    assert len(modules) > 20
    documented = re.findall(r"^\.\. automodule:: sacbook\.(\w+)$", text, re.M)
    missing = [m for m in modules if m not in documented]
    assert not missing, f"book/api.md documents no module {missing}"
    assert len(documented) == len(set(documented)), "a module documented twice"
    assert not [m for m in documented if m.startswith("_")], "a private module"
    floor = {name: i for i, name in enumerate(modules)}
    for group in re.split(r"^## ", text, flags=re.M)[1:]:
        names = re.findall(r"^\.\. automodule:: sacbook\.(\w+)$", group, re.M)
        assert names == sorted(names, key=lambda n: floor.get(n, len(floor))), (
            f"group {group.splitlines()[0]!r} is not in floor order: {names}"
        )
