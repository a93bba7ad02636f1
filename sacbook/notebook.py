"""The first cell of every chapter: where am I running, and on what device?

Each chapter's setup cell installs ``sacbook`` on Colab (a pinned release,
next to Colab's own JAX) and then calls :func:`setup`, which

* prints the versions and ``jax.devices()``;
* says how to get a GPU when there is none (Chapter 4 wants one);
* on Colab, turns on Colab's custom widget manager only where a chapter's
  widgets need it: Colab renders the ipywidgets 7 it ships by itself, but
  ipywidgets 8 or later needs the custom manager.
"""

from __future__ import annotations

import sys

GPU_HOWTO = (
    "On Colab: Runtime > Change runtime type > a GPU (T4 is free), then run again."
)


def on_colab() -> bool:
    """True inside a Colab kernel."""
    return "google.colab" in sys.modules


def needs_custom_widget_manager(ipywidgets_version: str) -> bool:
    """Colab draws ipywidgets 7 natively; 8 and later need its custom manager."""
    return int(ipywidgets_version.split(".")[0]) >= 8


def setup(
    *,
    widgets: bool = False,
    wants_accelerator: bool = False,
    cpu_devices: int | None = None,
) -> None:
    """Print where the chapter runs; enable Colab's widget manager if needed.

    Args:
      widgets: the chapter shows ipywidgets.
      wants_accelerator: the chapter is written for a GPU (it still runs on a
        CPU, at smaller sizes).
      cpu_devices: split the CPU into this many virtual JAX devices (for
        showing sharding on any machine). Only possible before JAX first
        uses its CPU backend, so this must be the first JAX call of the
        kernel; programs still run on the first device unless told otherwise.
    """
    import jax

    import sacbook
    from sacbook import device

    if cpu_devices is not None:
        try:
            jax.config.update("jax_num_cpu_devices", cpu_devices)
        except RuntimeError:  # JAX has already started: restart the kernel
            print(
                f"(JAX has already started, so the CPU cannot be split into "
                f"{cpu_devices} devices now: restart the kernel to get them)"
            )
    devices = jax.devices()
    lines = [
        f"sacbook {sacbook.__version__}, JAX {jax.__version__}, devices: {devices}"
    ]
    if cpu_devices is not None and device.is_accelerator(devices[0]):
        lines.append(f"and {len(jax.devices('cpu'))} virtual CPU devices")
    if not device.is_accelerator(devices[0]):
        if wants_accelerator:
            lines.append(
                "No GPU or TPU: this chapter runs on the CPU, at smaller sizes."
            )
            lines.append(GPU_HOWTO)
        else:
            lines.append(
                "No GPU or TPU, and none needed: this chapter runs well on a CPU."
            )
    if widgets and on_colab():
        import ipywidgets

        if needs_custom_widget_manager(ipywidgets.__version__):
            from google.colab import output

            output.enable_custom_widget_manager()
            lines.append(
                f"ipywidgets {ipywidgets.__version__}: "
                "Colab's custom widget manager is on"
            )
    print("\n".join(lines))
