"""sacbook.notebook: the chapters' setup, on and off Colab."""

import sys
import types

import pytest

from sacbook import notebook


@pytest.fixture
def fake_colab(monkeypatch):
    """A ``google.colab`` module whose widget-manager switch records its calls."""
    calls = []
    output = types.SimpleNamespace(enable_custom_widget_manager=lambda: calls.append(1))
    colab = types.ModuleType("google.colab")
    colab.output = output
    google = types.ModuleType("google")
    google.colab = colab
    monkeypatch.setitem(sys.modules, "google", google)
    monkeypatch.setitem(sys.modules, "google.colab", colab)
    return calls


@pytest.mark.parametrize(
    "version, needed", [("7.7.1", False), ("8.1.5", True), ("9.0", True)]
)
def test_custom_widget_manager_only_from_ipywidgets_8(version, needed):
    assert notebook.needs_custom_widget_manager(version) == needed


def test_setup_on_a_cpu_prints_the_devices_and_how_to_get_a_gpu(capsys):
    import jax

    assert (
        notebook.setup(wants_accelerator=True) is None
    )  # it prints, shows nothing else
    text = capsys.readouterr().out
    assert str(jax.devices()) in text and jax.__version__ in text
    assert "Runtime > Change runtime type" in text
    notebook.setup()
    assert "none needed" in capsys.readouterr().out
    assert not notebook.on_colab()


@pytest.mark.parametrize("version, enabled", [("7.7.1", 0), ("8.1.5", 1)])
def test_setup_on_colab_enables_the_widget_manager_only_when_needed(
    fake_colab, monkeypatch, version, enabled
):
    import ipywidgets

    monkeypatch.setattr(ipywidgets, "__version__", version)
    assert notebook.on_colab()
    notebook.setup(widgets=True)
    assert len(fake_colab) == enabled
    notebook.setup(widgets=False)  # a chapter without widgets never asks for it
    assert len(fake_colab) == enabled
