"""The built book in a real browser, as a reader meets it.

Every page of the book, in headless Chromium at 1280 px and 400 px wide:
no console errors, every formula typeset, every animation player present and
playing, every live view (``sacbook.live``) running and drawing new frames,
no code, output or equation wider than its column and no sideways
scrolling, every image loaded (with alt text), widget views rendered where the
page stores widget state, and the Colab launch link pointing at the
configured repository. A full-page screenshot of each page at each width
goes to ``_build/screenshots/`` (or ``$SACBOOK_SCREENSHOTS``), with every
finding in ``findings.txt`` there.

The book is built into a temporary folder, unless ``$SACBOOK_BOOK_HTML``
names a fresh build (``.ci/run`` passes its own ``_build/html``). The pages'
CDN assets (MathJax, require.js, the widget manager, font-awesome) are
served from their npm packages, fetched once into ``~/.cache/sacbook-browser``
(``$SACBOOK_BROWSER_CACHE``): the test needs no internet after that.

It runs only when asked, with ``SACBOOK_BROWSER=1`` (it builds the book and
takes a minute or two). Skipped without chromium (``apt-get install chromium chromium-driver``), without
jupyter-book (``pip install -e ".[book]"``) or without npm and an empty cache;
``SACBOOK_BROWSER_REQUIRED=1`` (set by ``.ci/run``) turns those skips into failures.
The helpers live in ``tests/browser/``; ``python tests/browser/check_book.py``
runs the same checks outside pytest.
"""

import os
import shutil
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "browser"))

import browser_assets  # noqa: E402
import check_book  # noqa: E402
from browser_cdp import find_chrome  # noqa: E402

CHROME = find_chrome()
REQUIRED = os.environ.get("SACBOOK_BROWSER_REQUIRED", "") not in ("", "0")
ASKED = REQUIRED or os.environ.get("SACBOOK_BROWSER", "") not in ("", "0")
SCREENSHOTS = Path(
    os.environ.get("SACBOOK_SCREENSHOTS", ROOT / "_build" / "screenshots")
)


def _skip(reason: str):
    if REQUIRED:
        pytest.fail(f"SACBOOK_BROWSER_REQUIRED is set, but {reason}", pytrace=False)
    pytest.skip(reason)


def _sources() -> list[Path]:
    book = ROOT / "book"
    return [
        ROOT / "_config.yml",
        ROOT / "_toc.yml",
        *book.glob("*.ipynb"),
        *book.glob("*.md"),
    ]


@pytest.fixture(scope="session")
def book_html(tmp_path_factory) -> Path:
    """The built site: $SACBOOK_BOOK_HTML if set, else a fresh build in a temporary folder."""
    if not ASKED:
        pytest.skip("the browser test runs with SACBOOK_BROWSER=1 (it builds the book)")
    if CHROME is None:
        _skip(
            "no chromium on PATH (apt-get install chromium chromium-driver, or set SACBOOK_CHROMIUM)"
        )
    given = os.environ.get("SACBOOK_BOOK_HTML")
    if given:
        html = Path(given).resolve()
        if not (html / "index.html").is_file():
            pytest.fail(
                f"SACBOOK_BOOK_HTML={given} holds no built book (no index.html)",
                pytrace=False,
            )
        built = max(p.stat().st_mtime for p in html.rglob("*.html"))
        newer = [p.relative_to(ROOT) for p in _sources() if p.stat().st_mtime > built]
        if newer:
            warnings.warn(
                f"SACBOOK_BOOK_HTML={given} is older than {', '.join(map(str, newer))}; "
                "the browser checks the older build",
                stacklevel=2,
            )
        return html
    jupyter_book = shutil.which("jupyter-book") or str(
        Path(sys.executable).parent / "jupyter-book"
    )
    if not Path(jupyter_book).exists():
        _skip(
            'jupyter-book is not installed (pip install -e ".[book]"), so the book cannot be built'
        )
    out = tmp_path_factory.mktemp("book")
    t0 = time.monotonic()
    run = subprocess.run(
        [jupyter_book, "build", "--all", str(ROOT), "--path-output", str(out)],
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert run.returncode == 0, (
        f"jupyter-book build failed:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    )
    print(f"built the book in {time.monotonic() - t0:.0f} s")
    return out / "_build" / "html"


@pytest.fixture(scope="session")
def checker(book_html, request):
    try:
        c = check_book.BookChecker(book_html, SCREENSHOTS, chrome=CHROME)
    except browser_assets.AssetsUnavailable as exc:
        _skip(f"the pages' CDN assets have no offline copy: {exc}")
    c.all_findings = []
    yield c
    c.close()
    (SCREENSHOTS / "findings.txt").write_text("".join(f"{f}\n" for f in c.all_findings))
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is not None and capture is not None:
        with capture.global_and_fixture_disabled():
            reporter.write_line("")
            for note in c.notes:
                reporter.write_line(f"browser test note: {note}")
            took = ", ".join(f"{page} {s:.0f} s" for page, s in c.timings.items())
            reporter.write_line(
                f"browser test: screenshots and findings.txt in {SCREENSHOTS} ({took})"
            )


def test_every_cdn_asset_has_an_offline_copy(checker):
    """Every script and stylesheet the pages load from a CDN maps to a file in an npm package."""
    missing = [url for url, path in checker.local.items() if path is None]
    assert not missing, (
        "no offline copy (add a rule to tests/browser/browser_assets.py): "
        + ", ".join(missing)
    )


@pytest.mark.parametrize("page", check_book.toc_pages())
def test_page_in_browser(checker, page):
    """What a reader sees on one page, at 1280 px and at 400 px."""
    findings = checker.check_page(page)
    checker.all_findings += findings
    if findings:
        pytest.fail(
            f"{len(findings)} problem(s) a reader meets on {page} "
            f"(screenshots in {SCREENSHOTS}, all findings in findings.txt there):\n"
            + check_book.report(findings, examples=12),
            pytrace=False,
        )


def test_the_live_views_are_on_the_chapters_and_their_module_is_served(book_html):
    """Each chapter holds a live view; the site serves the module the views inline."""
    module = ROOT / "sacbook" / "static" / "sacbook_live.js"
    served = book_html / "_static" / "sacbook_live.js"
    assert served.is_file() and served.read_bytes() == module.read_bytes()
    assert (book_html / "_static" / "policies" / "chapter3.json").is_file()
    for chapter in ("01_physics", "02_networks", "03_sac", "04_gpu_scaling"):
        page = (book_html / "book" / f"{chapter}.html").read_text()
        assert 'class="sacbook-live"' in page, f"{chapter} has no live view"
        assert module.read_text().strip() in page, f"{chapter}: an older module"
