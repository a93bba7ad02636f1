#!/usr/bin/env python
"""Execute notebooks in place, the way the book commits them.

    .venv/bin/python scripts/run_notebook.py book/01_physics.ipynb [more.ipynb ...]

Each notebook runs top to bottom with nbconvert's ExecutePreprocessor in the
``python3`` kernel of the interpreter running this script, from the
notebook's own folder, with ipywidgets state stored (so sliders render in the
static book). Consecutive stream outputs are merged, so re-running gives stable
diffs. The executed notebook is written back over the original.
A notebook that raises is still written back, with the error in it, and the
script exits non-zero.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import nbformat
from nbconvert.preprocessors import CellExecutionError, ExecutePreprocessor
from nbconvert.preprocessors.coalescestreams import CoalesceStreamsPreprocessor


def run(path: Path, timeout: int, kernel_name: str) -> bool:
    """Execute one notebook in place. Returns True when every cell ran."""
    nb = nbformat.read(path, as_version=4)
    ep = ExecutePreprocessor(timeout=timeout, kernel_name=kernel_name, store_widget_state=True)
    start = time.perf_counter()
    ok = True
    try:
        ep.preprocess(nb, {"metadata": {"path": str(path.parent.resolve())}})
    except CellExecutionError as err:
        ok = False
        print(f"{path}: a cell failed\n{err}", file=sys.stderr)
    except Exception as err:  # a cell timed out, the kernel died, ...
        ok = False
        print(f"{path}: execution stopped: {type(err).__name__}: {err}", file=sys.stderr)
    finally:
        # Merge stream chunks split by flush timing, so re-runs give stable diffs.
        nb, _ = CoalesceStreamsPreprocessor().preprocess(nb, {})
        nbformat.write(nb, path)
    elapsed = time.perf_counter() - start
    size = path.stat().st_size
    print(f"{path}: {'ok' if ok else 'FAILED'} in {elapsed:.1f} s, {size / 1e6:.2f} MB")
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="+", type=Path, help="notebooks to execute in place")
    parser.add_argument("--timeout", type=int, default=600,
                        help="per-cell timeout in seconds (default 600; -1 for none)")
    parser.add_argument("--kernel", default="python3",
                        help="kernel name (default python3: ipykernel's kernel, launched with "
                             "this interpreter, so run the script with the venv's python)")
    args = parser.parse_args(argv)
    missing = [str(p) for p in args.notebooks if not p.is_file()]
    if missing:
        parser.error(f"no such notebook: {', '.join(missing)}")
    results = [run(p, args.timeout, args.kernel) for p in args.notebooks]
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
