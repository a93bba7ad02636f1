"""Bench reports: what they were measured on, and reports side by side.

A report (``sacbook bench --json``, or one shipped as
``sacbook/data/bench_*.json``: :func:`load_references`) starts with
:func:`device_info`; :func:`summarize_report` picks its comparable figures
and :func:`format_table` sets several side by side at 88 columns
(:func:`format_html`: as an HTML table, for a notebook).
"""

from __future__ import annotations

import datetime
import html
import importlib.metadata
import importlib.resources
import json
import os
import platform
import re
from pathlib import Path

import jax

import sacbook
from sacbook.device import available_bytes, is_accelerator


def cpu_model(cpuinfo: str | os.PathLike = "/proc/cpuinfo") -> str | None:
    """The host CPU's model name: the first ``model name`` of ``cpuinfo``
    (Linux), else :func:`platform.processor` (macOS, Windows), else None.
    A name such as "2-core CPU" says little: two cores of a laptop and of a
    server differ severalfold."""
    try:
        text = Path(cpuinfo).read_text(errors="replace")
    except OSError:
        text = ""
    found = re.search(r"^model name\s*:\s*(.+?)\s*$", text, re.M)
    if found:
        return found.group(1)
    return platform.processor().strip() or None


def device_info() -> dict:
    """What the figures were measured on: device, host CPU model, versions,
    date; whether the device is an accelerator and the memory available on
    it (bytes, and the figure's source: see
    :func:`sacbook.device.available_bytes`)."""
    device = jax.devices()[0]
    memory, memory_source = available_bytes(device)
    versions = {}
    for name in ("jax", "jaxlib", "flax", "optax", "sacbook"):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    # a checkout on PYTHONPATH, not installed (as the GPU suite runs it)
    versions.setdefault("sacbook", sacbook.__version__)
    return {
        "date": datetime.date.today().isoformat(),
        "platform": device.platform,
        "device": getattr(device, "device_kind", str(device)),
        "accelerator": is_accelerator(device),
        "available_bytes": memory,
        "available_bytes_source": memory_source,
        "device_count": jax.device_count(),
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu_model(),
        "python": platform.python_version(),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "versions": versions,
    }


def load_references() -> list[tuple[str, dict]]:
    """Every ``sacbook/data/bench_*.json`` as ``(file name, report)``, by name."""
    folder = importlib.resources.files("sacbook") / "data"
    if not folder.is_dir():
        return []
    files = sorted(
        (
            f
            for f in folder.iterdir()
            if f.name.startswith("bench_") and f.name.endswith(".json")
        ),
        key=lambda f: f.name,
    )
    return [(f.name, json.loads(f.read_text())) for f in files]


def _rows(value) -> list[dict]:
    """A report entry as a list of rows (older reports stored one dict)."""
    return (
        value if isinstance(value, list) else [value] if isinstance(value, dict) else []
    )


def _short_cpu(model: str | None) -> str:
    """A CPU model name without trademark signs."""
    if not model:
        return "not recorded"
    model = re.sub(r"\((R|TM|tm)\)|\bCPU\b", " ", model)
    return " ".join(model.split()) or "not recorded"


def _fmt(x, fmt: str = "{:.3g}") -> str:
    return "-" if x is None else fmt.format(x)


def summarize_report(report: dict) -> dict[str, str]:
    """The comparable figures of a bench report (or of a live run shaped like
    one), as short label -> text pairs for :func:`format_table`."""
    dev = report.get("device", {})
    sims = _rows(report.get("simulation"))
    sim_1024 = next((r for r in sims if r["num_envs"] == 1024), None)
    sim_max = max(sims, key=lambda r: r["num_envs"], default=None)
    trains = _rows(report.get("training"))
    train_1024 = next((r for r in trains if r["num_envs"] == 1024), None)
    train_max = max(trains, key=lambda r: r["num_envs"], default=None)
    solves = [
        r
        for r in _rows(report.get("time_to_solve"))
        if r.get("preset", "gymnasium") == "gymnasium"
    ]
    default = next(
        (
            r
            for r in solves
            if r.get("num_envs") == 1024 and r.get("batch_size", 96) == 96
        ),
        None,
    )
    cold = [r for r in solves if r.get("solve_seconds_total") is not None]
    fastest = min(cold, key=lambda r: r["solve_seconds_total"], default=None)
    seeds = report.get("seeds") if isinstance(report.get("seeds"), dict) else None
    platform = dev.get("platform", "?")
    device = dev.get("device", "?")
    if platform == "cpu" and dev.get("cpu_count"):
        device = f"{dev['cpu_count']}-core CPU"
    out = {
        "recorded": dev.get("date", "-"),
        "device": device if platform != "cpu" or "CPU" in device else f"{device} (CPU)",
        # the host's CPU, on a GPU machine too (older reports lack it)
        "CPU model": _short_cpu(dev.get("cpu_model")),
        "jax": dev.get("versions", {}).get("jax", "-"),
        "sacbook": dev.get("versions", {}).get("sacbook", "-"),
        "sim steps/s, N=1024": _fmt(sim_1024 and sim_1024["env_steps_per_second"]),
        "sim steps/s, largest N": (
            f"{_fmt(sim_max['env_steps_per_second'])} ({sim_max['num_envs']:,})"
            if sim_max
            else "-"
        ),
        "train steps/s, N=1024": _fmt(
            train_1024 and train_1024["env_steps_per_second"]
        ),
        "train updates/s, N=1024": _fmt(
            train_1024 and train_1024["updates_per_second"], "{:.0f}"
        ),
        "train steps/s, largest N": (
            f"{_fmt(train_max['env_steps_per_second'])} ({train_max['num_envs']:,})"
            if train_max
            else "-"
        ),
        # S seeds as one program against S runs one after another, env-steps/s
        "seeds in one program, speed-up": (
            f"{seeds['ratio']['median']:.2g}x ({seeds.get('seeds', '?')} seeds)"
            if seeds and seeds.get("ratio")
            else "-"
        ),
        "default: steps to -200": _fmt(
            default and default.get("solve_env_steps"), "{:,}"
        ),
        "default: train s to -200": _fmt(
            default and default.get("solve_seconds_after_compile"), "{:.1f}"
        ),
        "default: compile s": _fmt(
            default and default.get("compile_seconds"), "{:.1f}"
        ),
        # cold, in a fresh process: only `sacbook bench` measures it
        "default: cold s to -200": _fmt(
            default and default.get("solve_seconds_total"), "{:.1f}"
        ),
    }
    if fastest is not None and fastest is not default:
        out["fastest cold s to -200"] = (
            f"{fastest['solve_seconds_total']:.1f} (N={fastest['num_envs']}, "
            f"B={fastest['batch_size']})"
        )
    for name, row in (report.get("compare") or {}).items():
        if row and "env_steps_per_second" in row:
            out[f"{name} sim steps/s, N=1024"] = _fmt(row["env_steps_per_second"])
        elif row and row.get("solve_seconds_total") is not None:
            out[f"{name}: cold s to -200"] = _fmt(row["solve_seconds_total"], "{:.1f}")
    # sacbook's speed over each reference: median of interleaved pairs (reports
    # since 0.2)
    for name, row in (report.get("compare") or {}).items():
        stats = (row or {}).get("ratio")
        if stats:
            what = (
                f"N={row['num_envs']}"
                if "env_steps_per_second" in row
                else f"{stats.get('recipe', 'default')} to -200"
            )
            out[f"x {name}, {what} (median)"] = (
                f"{stats['median']:.3g} ({stats['iqr'][0]:.3g}-{stats['iqr'][1]:.3g})"
            )
    return out


def format_table(columns: list[tuple[str, dict]], width: int = 88) -> str:
    """Columns of :func:`summarize_report` side by side as text, at most
    ``width`` characters a line: columns that do not fit go to a next block."""
    keys = list(dict.fromkeys(k for _, col in columns for k in col))
    label_w = max(map(len, keys))
    widths = [
        max(len(title), *(len(col.get(k, "-")) for k in keys)) for title, col in columns
    ]
    blocks, block, used = [], [], label_w
    for i, w in enumerate(widths):
        if block and used + 3 + w > width:
            blocks.append(block)
            block, used = [], label_w
        block.append(i)
        used += 3 + w
    blocks.append(block)
    lines = []
    for block in blocks:
        if lines:
            lines.append("")
        lines.append(
            f"{'':{label_w}} | "
            + " | ".join(f"{columns[i][0]:>{widths[i]}}" for i in block)
        )
        lines.append("-" * label_w + "-+-" + "-+-".join("-" * widths[i] for i in block))
        for k in keys:
            lines.append(
                f"{k:{label_w}} | "
                + " | ".join(f"{columns[i][1].get(k, '-'):>{widths[i]}}" for i in block)
            )
    return "\n".join(lines)


def format_html(columns: list[tuple[str, dict]], caption: str = "") -> str:
    """Columns of :func:`summarize_report` side by side as an HTML table, one
    row per figure: narrow enough for a phone (the cells wrap), where the
    88-column text of :func:`format_table` would wrap into noise."""
    keys = list(dict.fromkeys(k for _, col in columns for k in col))
    pad = "padding: 0.15em 0.6em 0.15em 0"

    def cell(tag: str, text: str) -> str:
        return f'<{tag} style="{pad}; text-align: left">{html.escape(text)}</{tag}>'

    head = "".join(cell("th", title) for title, _ in columns)
    rows = "".join(
        "<tr>"
        + cell("th", k)
        + "".join(cell("td", col.get(k, "-")) for _, col in columns)
        + "</tr>"
        for k in keys
    )
    caption = f"<caption>{html.escape(caption)}</caption>" if caption else ""
    return (
        '<table class="sacbook-bench" style="border-collapse: collapse">'
        f"{caption}<thead><tr>{cell('th', '')}{head}</tr></thead>"
        f"<tbody>{rows}</tbody></table>"
    )
