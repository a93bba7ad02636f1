#!/usr/bin/env python
"""Execute notebooks in place, the way the book commits them.

    .venv/bin/python scripts/run_notebook.py book/01_physics.ipynb [more.ipynb ...]

Each notebook runs top to bottom with nbclient in the ``python3`` kernel of the
interpreter running this script, from the notebook's own folder, with
ipywidgets state stored (so sliders render in the static book). Consecutive
stream outputs are merged, so re-running gives stable diffs. The executed
notebook is written back over the original (or to ``--out-dir``).
A notebook that raises is still written, with the error in it, and the script
exits non-zero.

``--set NAME=VALUE`` runs a cell ``NAME = VALUE`` right after the cell tagged
``parameters`` (papermill's convention); the GPU suite's ``--smoke`` uses it.
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError


def coalesce_streams(nb) -> None:
    """Merge consecutive outputs of the same stream in every code cell."""
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        merged = []
        for out in cell.outputs:
            last = merged[-1] if merged else None
            if (
                out.output_type == "stream"
                and last is not None
                and last.output_type == "stream"
                and last.name == out.name
            ):
                last.text += out.text
            else:
                merged.append(out)
        cell.outputs = merged


def inject_parameters(nb, assignments: list[str]) -> None:
    """Insert a cell with ``assignments`` after the cell tagged ``parameters``."""
    index = next(
        (
            i
            for i, c in enumerate(nb.cells)
            if "parameters" in c.get("metadata", {}).get("tags", [])
        ),
        None,
    )
    if index is None:
        raise ValueError("--set: the notebook has no cell tagged 'parameters'")
    cell = nbformat.v4.new_code_cell("\n".join(assignments))
    cell.metadata["tags"] = ["injected-parameters"]
    nb.cells.insert(index + 1, cell)


def run(
    path: Path,
    timeout: int,
    kernel_name: str,
    out: Path | None = None,
    assignments: list[str] = (),
) -> bool:
    """Execute one notebook; write it to ``out`` (default: in place).
    Returns True when every cell ran."""
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:  # cells added by hand may lack the id nbformat 4.5 wants
        cell.setdefault("id", uuid.uuid4().hex[:8])
    if assignments:
        inject_parameters(nb, list(assignments))
    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name=kernel_name,
        store_widget_state=True,
        resources={"metadata": {"path": str(path.parent.resolve())}},
    )
    start = time.perf_counter()
    ok = True
    try:
        client.execute()
    except CellExecutionError as err:
        ok = False
        print(f"{path}: a cell failed\n{err}", file=sys.stderr)
    except Exception as err:  # a cell timed out, the kernel died, ...
        ok = False
        print(
            f"{path}: execution stopped: {type(err).__name__}: {err}", file=sys.stderr
        )
    finally:
        coalesce_streams(nb)
        out = out or path
        nbformat.write(nb, out)
    elapsed = time.perf_counter() - start
    print(
        f"{path}: {'ok' if ok else 'FAILED'} in {elapsed:.1f} s, "
        f"{out.stat().st_size / 1e6:.2f} MB -> {out}"
    )
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="+", type=Path, help="notebooks to execute")
    parser.add_argument(
        "--timeout",
        type=int,
        default=600,
        help="per-cell timeout in seconds (default 600; -1 for none)",
    )
    parser.add_argument(
        "--kernel",
        default="python3",
        help="kernel name (default python3: ipykernel's kernel, launched "
        "with this interpreter, so run the script with the venv's python)",
    )
    parser.add_argument(
        "--out-dir",
        type=Path,
        help="write the executed notebooks here instead of in place",
    )
    parser.add_argument(
        "--set",
        dest="assignments",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a parameter set after the 'parameters' cell",
    )
    args = parser.parse_args(argv)
    missing = [str(p) for p in args.notebooks if not p.is_file()]
    if missing:
        parser.error(f"no such notebook: {', '.join(missing)}")
    bad = [
        a
        for a in args.assignments
        if "=" not in a or not a.split("=")[0].isidentifier()
    ]
    if bad:
        parser.error(f"--set expects NAME=VALUE, got {bad[0]!r}")
    if args.out_dir:
        args.out_dir.mkdir(parents=True, exist_ok=True)
    results = [
        run(
            p,
            args.timeout,
            args.kernel,
            args.out_dir / p.name if args.out_dir else None,
            args.assignments,
        )
        for p in args.notebooks
    ]
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
