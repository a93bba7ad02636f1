"""Offline copies of the CDN assets the built book loads.

The pages load MathJax 3, require.js, the Jupyter widgets HTML manager and
font-awesome from CDNs. Each CDN address names an npm package and a file in
it, so every one is served from that package, downloaded once with
``npm pack`` into a cache outside git (``$SACBOOK_BROWSER_CACHE``, default
``~/.cache/sacbook-browser``). The browser test routes the CDN requests to
these files with DevTools request interception; nothing else is fetched.
"""

from __future__ import annotations

import base64
import hashlib
import mimetypes
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

CACHE = Path(
    os.environ.get("SACBOOK_BROWSER_CACHE", Path.home() / ".cache" / "sacbook-browser")
)

# CDN address -> (npm spec, path inside the package). Only hosts that serve npm
# packages, or a package at a version, are mapped: anything else the page asks
# for is reported as an external request without an offline copy.
_PKG = r"(?P<name>(?:@[^/@]+/)?[^/@]+)"
_RULES = [
    # jsDelivr and unpkg serve any npm package: /npm/NAME@RANGE/PATH
    (
        re.compile(
            rf"^https?://cdn\.jsdelivr\.net/npm/{_PKG}@(?P<ver>[^/]+)/(?P<path>[^?#]*)"
        ),
        None,
    ),
    (re.compile(rf"^https?://unpkg\.com/{_PKG}@(?P<ver>[^/]+)/(?P<path>[^?#]*)"), None),
    # cdnjs's require.js is a minified requirejs/require.js of the same version
    (
        re.compile(
            r"^https?://cdnjs\.cloudflare\.com/ajax/libs/require\.js/(?P<ver>[^/]+)/require(?:\.min)?\.js"
        ),
        ("requirejs", "require.js"),
    ),
    # font-awesome 4 from BootstrapCDN: the npm package has the same css/ and fonts/
    (
        re.compile(
            r"^https?://(?:maxcdn|stackpath|netdna)\.bootstrapcdn\.com/font-awesome/(?P<ver>[^/]+)/(?P<path>[^?#]*)"
        ),
        ("font-awesome", None),
    ),
]


def npm_location(url: str) -> tuple[str, str] | None:
    """(npm spec 'name@range', path in the package) for a CDN address, else None."""
    for pattern, fixed in _RULES:
        m = pattern.match(url)
        if not m:
            continue
        name, path = fixed if fixed else (None, None)
        name = name or m.group("name")
        path = path or m.group("path")
        return f"{name}@{m.group('ver')}", path
    return None


class AssetsUnavailable(RuntimeError):
    """An asset is not in the cache and npm cannot fetch it."""


def _spec_dir(spec: str) -> Path:
    return CACHE / "npm" / spec.replace("/", "__")


def ensure_package(spec: str) -> Path:
    """The unpacked package for an npm spec, fetched with ``npm pack`` on first use."""
    target = _spec_dir(spec)
    if (target / ".complete").exists():
        return target
    npm = shutil.which("npm")
    if npm is None:
        raise AssetsUnavailable(
            f"npm is needed once to fetch {spec} into {CACHE} (apt-get install npm)"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        out = subprocess.run(
            [npm, "pack", spec, "--silent", "--pack-destination", tmp],
            capture_output=True,
            text=True,
            cwd=tmp,
            timeout=300,
        )
        if out.returncode:
            raise AssetsUnavailable(
                f"npm pack {spec} failed: {out.stderr.strip()[-500:]}"
            )
        tgz = next(Path(tmp).glob("*.tgz"))
        unpacked = Path(tmp) / "unpacked"
        with tarfile.open(tgz) as tar:
            try:
                tar.extractall(unpacked, filter="data")
            except TypeError:  # Python without extraction filters
                tar.extractall(unpacked)
        # npm tarballs hold one top folder, usually package/
        (top,) = [p for p in unpacked.iterdir() if p.is_dir()]
        (top / ".version").write_text(tgz.name)
        (top / ".complete").write_text("")
        if target.exists():
            shutil.rmtree(target)
        top.rename(target)
    return target


def local_file(url: str) -> Path | None:
    """The offline copy of a CDN address (fetching its package if needed), else None."""
    loc = npm_location(url)
    if loc is None:
        return None
    spec, path = loc
    root = ensure_package(spec)
    candidate = (root / path).resolve()
    if root.resolve() not in candidate.parents or not candidate.is_file():
        return None
    return candidate


def content_type(path: Path) -> str:
    kind = mimetypes.guess_type(path.name)[0]
    if path.suffix == ".js":
        kind = "application/javascript"
    elif path.suffix in (".woff", ".woff2"):
        kind = f"font/{path.suffix[1:]}"
    return (kind or "application/octet-stream") + (
        "; charset=utf-8" if kind and "text" in kind or path.suffix == ".js" else ""
    )


def sri_matches(integrity: str, data: bytes) -> bool:
    """Whether data satisfies an integrity="sha256-... sha384-..." attribute."""
    for token in integrity.split():
        algo, _, digest = token.partition("-")
        if algo in ("sha256", "sha384", "sha512"):
            if (
                base64.b64encode(hashlib.new(algo, data).digest()).decode()
                == digest.split("?")[0]
            ):
                return True
    return False


_TAG = re.compile(r"<(?:script|link)\b[^>]*>", re.I | re.S)
_ATTR = re.compile(r'\b(src|href|integrity)\s*=\s*"([^"]*)"', re.I)


def external_assets(html: str) -> list[dict]:
    """The script and link tags of a page that load from another host."""
    found = []
    for tag in _TAG.findall(html):
        attrs = {k.lower(): v for k, v in _ATTR.findall(tag)}
        url = attrs.get("src") or (
            attrs.get("href") if tag.lower().startswith("<link") else None
        )
        if url and re.match(r"^(https?:)?//", url):
            if tag.lower().startswith("<link") and not re.search(
                r'rel="(stylesheet|preload|modulepreload)"', tag
            ):
                continue
            found.append(
                {
                    "url": "https:" + url if url.startswith("//") else url,
                    "tag": tag,
                    "integrity": attrs.get("integrity"),
                }
            )
    return found


def prepare(html_dir: Path) -> dict:
    """Fetch every package the built pages name; returns {url: local path}.

    Also lists the tags whose integrity hash the npm copy does not satisfy
    (the browser test removes those attributes, see check_book.py).
    """
    urls: dict[str, Path | None] = {}
    for page in Path(html_dir).rglob("*.html"):
        if "_static" in page.parts or "_sources" in page.parts:
            continue
        for asset in external_assets(page.read_text(errors="replace")):
            if asset["url"] not in urls:
                urls[asset["url"]] = local_file(asset["url"])
    return urls


if (
    __name__ == "__main__"
):  # python tests/browser/browser_assets.py _build/html: fill the cache
    import sys

    for url, path in prepare(
        Path(sys.argv[1] if len(sys.argv) > 1 else "_build/html")
    ).items():
        print(f"{url}\n    -> {path or 'NO OFFLINE COPY'}")
