"""sacbook.show_source: the package's source, and views of it without the lines
for sweeps and devices (what Chapter 3 displays)."""

import ast
import importlib
import json
import re
from pathlib import Path

import jax
import numpy as np
import pytest

import sacbook
from sacbook import loop, networks, replay, sac
from sacbook._source import source_text

HIDE = ("sweep", "devices")
SHOWN = [sac.update, loop.iteration, loop.update_round, loop.run_chunk]


@pytest.mark.parametrize("fn", SHOWN, ids=lambda f: f.__name__)
def test_view_without_sweeps_and_devices_is_valid_python_without_them(fn):
    view = source_text(fn, HIDE)
    ast.parse(view)
    for word in ("hyper", "axis", "[sweep]", "[devices]", "pmean", "fold_in"):
        assert word not in view, (word, view)
    # the full source keeps the lines, with the tags read as plain comments
    full = source_text(fn)
    ast.parse(full)
    assert "[devices]" not in full and "[sweep]" not in full
    assert "axis" in full


def test_view_drops_a_parameter_its_calls_and_its_docs():
    view = source_text(loop.update_round, HIDE)
    assert "sac.update(state, batch, k_update)\n" in view
    assert "Args:\n" in view and "config:" in view  # other entries stay
    assert "averages the gradients" not in view  # the axis entry went


def test_trimmed_update_computes_what_the_package_does():
    """The Chapter 3 view of sac.update, executed, is the package's update."""
    config = sac.SACConfig(hidden_sizes=(8, 8), batch_size=16)
    state = sac.init(jax.random.key(0), config)
    rng = np.random.default_rng(0)
    batch = replay.Transition(
        obs=rng.normal(size=(16, 3)).astype(np.float32),
        action=rng.uniform(-1, 1, (16, 1)).astype(np.float32),
        reward=rng.normal(size=16).astype(np.float32),
        next_obs=rng.normal(size=(16, 3)).astype(np.float32),
        terminated=np.zeros(16, bool),
        truncated=np.zeros(16, bool),
    )
    namespace = dict(vars(sac))
    exec(source_text(sac.update, HIDE), namespace)  # noqa: S102
    trimmed = namespace["update"]
    assert trimmed is not sac.update and "networks" in namespace
    key = jax.random.key(1)
    want_state, want = sac.update(state, batch, key)
    got_state, got = jax.jit(trimmed)(state, batch, key)
    for name in sac.METRIC_NAMES:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(
        jax.tree.leaves(got_state.actor_params)[0],
        jax.tree.leaves(want_state.actor_params)[0],
        rtol=1e-6,
        atol=1e-7,
    )
    assert networks.sample_action  # the view uses the module's own names


def test_show_source_returns_displayable_code():
    code = sacbook.show_source(sac.update, hide=HIDE)
    assert "def update(" in code.data and "hyper" not in code.data


BOOK = Path(__file__).resolve().parents[1] / "book"
# a call as the chapters write it: sacbook.show_source(module.name[, hide=(...)])
SHOW_CALL = re.compile(r"sacbook\.show_source\((\w+)\.(\w+)(?:, hide=(\([^)]*\)))?\)")


def _shown_sources():
    """(notebook, call, text shown) for each show_source output committed."""
    for path in sorted(BOOK.glob("*.ipynb")):
        for cell in json.loads(path.read_text())["cells"]:
            calls = SHOW_CALL.findall("".join(cell["source"]))
            if cell["cell_type"] != "code" or not calls:
                continue
            shown = [o["data"]["text/plain"] for o in cell["outputs"] if "data" in o]
            assert len(shown) == len(calls), (path.name, calls)
            for call, text in zip(calls, shown):
                yield path.name, call, "".join(text)


def test_the_chapters_show_the_source_as_it_is_now():
    """Every listing of the package's source in the committed chapters is the
    source today: a change to a function the book shows means its chapter
    is executed again (scripts/run_notebook.py), or the page shows old code."""
    listings = list(_shown_sources())
    assert len(listings) >= 20, listings  # the scan finds the chapters' listings
    stale = []
    for notebook, (module, name, hide), text in listings:
        obj = getattr(importlib.import_module(f"sacbook.{module}"), name)
        hidden = ast.literal_eval(hide) if hide else ()
        if source_text(obj, hidden).rstrip("\n") != text.rstrip("\n"):
            stale.append(f"{notebook}: {module}.{name}")
    assert not stale, f"listings older than the source: {stale}"
