"""Checksums that tell an intact checkpoint from a damaged one.

A checkpoint can be damaged after it was written: a disk that fails, a copy
that stops half-way, a flipped bit. orbax notices some of that (a file
shorter than its index says) and not the rest (a flipped bit in a raw array),
and when it does notice, it fails deep inside its asynchronous readers. So a
checkpoint carries two records of its own, both checked before its arrays
are used:

* :func:`array_checksums`: a CRC-32 of every array of the state, computed on
  the host when it is saved, stored in the checkpoint's metadata and checked
  against the arrays that come back (:func:`mismatched_arrays`);
* :func:`write_manifest`: the size and CRC-32 of every file orbax wrote,
  checked before orbax reads any of them (:func:`damaged_files`), so a
  damaged file is reported in one line and never handed to orbax.

CRC-32 (``zlib``) catches any error in up to 32 consecutive bits and reads a
few GB/s: cheap next to writing the checkpoint. It guards against accidents,
not against someone who wants to forge a checkpoint.
"""

from __future__ import annotations

import json
import os
import zlib
from pathlib import Path

import jax
import numpy as np

MANIFEST = "sacbook_manifest.json"


def _leaf_name(path) -> str:
    """``"sac/actor_params/params/MLP_0/Dense_0/kernel"`` for a tree path,
    whether the tree is made of dataclasses or of dicts (a partial restore)."""
    parts = []
    for entry in path:
        for attribute in ("name", "key", "idx"):
            if hasattr(entry, attribute):
                parts.append(str(getattr(entry, attribute)))
                break
    return "/".join(parts)


def _crc(data) -> str:
    return f"{zlib.crc32(data) & 0xFFFFFFFF:08x}"


def array_checksums(tree) -> dict[str, str]:
    """``{leaf name: "dtype shape crc32"}`` of every array of ``tree``
    (host or device arrays; device arrays are copied to the host).

    Under ``jax.distributed``, an array split across processes (a replay
    buffer) is held whole by none of them: it has no checksum here, and the
    file manifest (:func:`write_manifest`) guards its files."""
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    sums = {}
    for path, leaf in leaves:
        if isinstance(leaf, jax.Array) and not (
            leaf.is_fully_addressable
            or (leaf.is_fully_replicated and leaf.addressable_shards)
        ):
            continue  # split across processes, or held by another one
        leaf = jax.device_get(leaf)
        array = np.ascontiguousarray(leaf)
        sums[_leaf_name(path)] = (
            f"{array.dtype} {list(array.shape)} {_crc(array.view(np.uint8))}"
        )
    return sums


def mismatched_arrays(tree, expected: dict[str, str]) -> list[str]:
    """The leaves of ``tree`` whose checksum differs from ``expected`` (those
    ``expected`` does not list are not checked: a partial restore)."""
    got = array_checksums(tree)
    return [name for name, value in got.items() if expected.get(name, value) != value]


def write_manifest(folder: Path) -> None:
    """Record the size and CRC-32 of every file under ``folder`` in
    ``folder/MANIFEST``, written under a temporary name and renamed."""
    folder = Path(folder)
    files = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        name = str(path.relative_to(folder))
        if name != MANIFEST:
            files[name] = {"bytes": path.stat().st_size, "crc32": _file_crc(path)}
    temporary = folder / (MANIFEST + ".tmp")
    temporary.write_text(json.dumps({"files": files}))
    os.replace(temporary, folder / MANIFEST)


def damaged_files(folder: Path) -> str | None:
    """None if every file the manifest of ``folder`` lists is there with its
    size and CRC-32 (or if there is no manifest: a checkpoint from before
    manifests); otherwise one phrase saying what is wrong."""
    folder = Path(folder)
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        return f"its manifest is unreadable ({type(e).__name__})"
    if not _well_formed(manifest):  # e.g. a flipped bit in a key
        return "its manifest is unreadable (not the form sacbook writes)"
    for name, entry in manifest["files"].items():
        path = folder / name
        if not path.is_file():
            return f"{name} is missing"
        size = path.stat().st_size
        if size != entry["bytes"]:
            return f"{name} has {size} bytes, {entry['bytes']} were written"
        if _file_crc(path) != entry["crc32"]:
            return f"{name} has changed since it was written (CRC-32)"
    return None


def _well_formed(manifest) -> bool:
    """Whether ``manifest`` has the form :func:`write_manifest` writes:
    ``{"files": {name: {"bytes": int, "crc32": str}}}``."""
    files = manifest.get("files") if isinstance(manifest, dict) else None
    return isinstance(files, dict) and all(
        isinstance(entry, dict)
        and isinstance(entry.get("bytes"), int)
        and isinstance(entry.get("crc32"), str)
        for entry in files.values()
    )


def _file_crc(path: Path) -> str:
    crc = 0
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            crc = zlib.crc32(block, crc)
    return f"{crc & 0xFFFFFFFF:08x}"
