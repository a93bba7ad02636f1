"""Open every page of the built book in headless Chromium and check what a reader sees.

    python tests/browser/check_book.py [_build/html] [--out _build/screenshots] [--page book/01_physics.html]

For each page, at 1280 px and 400 px wide: console errors, formulas, the
animation players, the live views (sacbook.live: running, drawn, animated), widths (code, outputs, equations, the page itself),
images, widget views and the Colab launch link; a full-page screenshot of
each. The CDN assets are served from npm packages (see browser_assets.py) by
intercepting the browser's requests, so no internet is needed.
tests/test_browser.py runs this under pytest.
"""

from __future__ import annotations

import base64
import functools
import http.server
import json
import re
import sys
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))

import browser_assets as assets  # noqa: E402
from browser_cdp import Browser, CDPError, find_chrome  # noqa: E402

WIDTHS = (1280, 400)
# At desktop widths a code line of 88 characters (the package's line length,
# the most any cell or output holds) must fit its column unwrapped; narrower
# windows wrap long lines instead (book/_ext/static/sacbook.css).
CODE_COLUMNS = 88
DESKTOP_WIDTH = 1200
VIEWPORT_HEIGHT = 900
ANIMATION_WAIT_S = 3.0
LIVE_WAIT_S = 1.0  # a live view (sacbook.live) must draw new frames within this
WIDGET_WAIT_S = 20.0

# Console messages that are not the book's fault, each with the reason. A
# message is ignored only if it matches one of these patterns.
# (Each page is opened in a fresh browser context, as a first-time reader.)
KNOWN_HARMLESS_CONSOLE: list[tuple[str, str]] = [
    # The browser itself (not the page) asks the site root for /favicon.ico,
    # sometimes before the tab closes and sometimes not; the book sets no
    # html_favicon, and a reader's console does not show this request.
    (r"^network: .*\(favicon\.ico:\d+\)$", "the browser's own favicon probe"),
]


@dataclass(frozen=True)
class Finding:
    page: str
    width: int
    kind: str
    where: str
    detail: str

    def __str__(self):
        where = f" {self.where}:" if self.where else ""
        return f"{self.page} @ {self.width}px [{self.kind}]{where} {self.detail}"


def toc_pages(root: Path = ROOT) -> list[str]:
    """The pages in _toc.yml, as paths in the built site, plus the generated ones."""
    toc = (root / "_toc.yml").read_text()
    files = re.findall(r"^\s*(?:-\s*)?(?:root|file):\s*(\S+)", toc, re.M)
    return [f"{f}.html" for f in files] + ["genindex.html", "search.html"]


def repository(root: Path = ROOT) -> dict:
    text = (root / "_config.yml").read_text()
    try:
        import yaml

        return yaml.safe_load(text).get("repository", {})
    except ImportError:
        block = re.search(r"^repository:\s*\n((?:[ \t]+.*\n?)*)", text, re.M).group(1)
        return {
            k: v.strip().strip("\"'")
            for k, v in re.findall(r"^\s+(\w+):\s*([^#\n]*)", block, re.M)
        }


def colab_url(repo: dict, notebook: str) -> str:
    owner_repo = re.sub(r"^https?://github\.com/", "", str(repo["url"]).rstrip("/"))
    prefix = str(repo.get("path_to_book") or "").strip("/")
    path = f"{prefix}/{notebook}" if prefix else notebook
    return f"https://colab.research.google.com/github/{owner_repo}/blob/{repo.get('branch', 'main')}/{path}"


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def serve(directory: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(
        target=server.serve_forever, daemon=True, name="book-server"
    ).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


class BookChecker:
    def __init__(
        self,
        html_dir: Path,
        screenshots: Path,
        root: Path = ROOT,
        chrome: str | None = None,
        check_alt: bool = True,
    ):
        self.html_dir = Path(html_dir).resolve()
        self.screenshots = Path(screenshots)
        self.screenshots.mkdir(parents=True, exist_ok=True)
        self.repo = repository(root)
        self.check_alt = check_alt
        self.js = (HERE / "page_checks.js").read_text()
        # every CDN asset the pages name, fetched now; and the tags whose
        # integrity hash the npm copy does not satisfy
        self.local = assets.prepare(self.html_dir)
        self.sri_mismatch: dict[str, str] = {}
        self.notes: list[str] = []
        for page in self.html_dir.rglob("*.html"):
            for a in assets.external_assets(page.read_text(errors="replace")):
                path = self.local.get(a["url"])
                if (
                    a["integrity"]
                    and path
                    and not assets.sri_matches(a["integrity"], path.read_bytes())
                ):
                    if a["url"] not in self.sri_mismatch:
                        self.notes.append(
                            f"{a['url']} is served from npm's {path.relative_to(assets.CACHE)}, which is not "
                            f"byte-identical to the CDN's file, so the test drops its integrity attribute"
                        )
                    self.sri_mismatch[a["url"]] = a["integrity"]
        chrome = chrome or find_chrome()
        if chrome is None:
            raise RuntimeError("no chromium on PATH")
        self.browser = Browser(chrome)
        self.server, self.origin = serve(self.html_dir)
        self.timings: dict[str, float] = {}

    def close(self):
        self.browser.close()
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- one page -----------------------------------------------------------
    def check_page(self, rel: str) -> list[Finding]:
        t0 = time.monotonic()
        found = []
        for width in WIDTHS:
            found += self._visit(rel, width)
        self.timings[rel] = time.monotonic() - t0
        return found

    def _route(self, page, console: list, external: list):
        def on_paused(p):
            rid, url = p["requestId"], p["request"]["url"]
            try:
                if "responseStatusCode" in p:  # a page of the book, on its way back
                    self._rewrite_document(page, p)
                elif url.startswith(self.origin + "/") or not url.startswith(
                    ("http:", "https:")
                ):
                    page.send("Fetch.continueRequest", {"requestId": rid})
                else:
                    try:
                        path = self.local.get(url) or assets.local_file(url)
                    except RuntimeError as exc:  # npm missing or failing
                        path = None
                        console.append(f"offline copy of {url} unavailable: {exc}")
                    if path is None:
                        external.append(url)
                        page.send(
                            "Fetch.failRequest",
                            {"requestId": rid, "errorReason": "InternetDisconnected"},
                        )
                        return
                    headers = [
                        {"name": "Content-Type", "value": assets.content_type(path)},
                        {"name": "Access-Control-Allow-Origin", "value": "*"},
                        {"name": "Cache-Control", "value": "max-age=3600"},
                    ]
                    page.send(
                        "Fetch.fulfillRequest",
                        {
                            "requestId": rid,
                            "responseCode": 200,
                            "responseHeaders": headers,
                            "body": base64.b64encode(path.read_bytes()).decode(),
                        },
                    )
            except CDPError as exc:
                if "Invalid InterceptionId" not in str(exc):  # the tab went away first
                    console.append(f"interception of {url} failed: {exc}")

        page.on("Fetch.requestPaused", on_paused)
        patterns = [{"urlPattern": "*", "requestStage": "Request"}]
        if self.sri_mismatch:
            patterns.append(
                {
                    "urlPattern": self.origin + "/*",
                    "resourceType": "Document",
                    "requestStage": "Response",
                }
            )
        page.send("Fetch.enable", {"patterns": patterns})

    def _rewrite_document(self, page, p):
        rid = p["requestId"]
        body = page.send("Fetch.getResponseBody", {"requestId": rid})
        html = (
            base64.b64decode(body["body"])
            if body.get("base64Encoded")
            else body["body"].encode()
        )
        text = html.decode("utf-8", errors="replace")
        for url, integrity in self.sri_mismatch.items():
            text = re.sub(
                r'(<(?:script|link)\b[^>]*?)\s+integrity="'
                + re.escape(integrity)
                + r'"([^>]*?(?:src|href)="'
                + re.escape(url)
                + '")',
                r"\1\2",
                text,
            )
            text = re.sub(
                r'(<(?:script|link)\b[^>]*?(?:src|href)="'
                + re.escape(url)
                + r'"[^>]*?)\s+integrity="'
                + re.escape(integrity)
                + '"',
                r"\1",
                text,
            )
        headers = [
            h
            for h in p.get("responseHeaders", [])
            if h["name"].lower() not in ("content-length", "content-encoding")
        ]
        page.send(
            "Fetch.fulfillRequest",
            {
                "requestId": rid,
                "responseCode": p["responseStatusCode"],
                "responseHeaders": headers,
                "body": base64.b64encode(text.encode()).decode(),
            },
        )

    def _visit(self, rel: str, width: int) -> list[Finding]:
        findings: list[Finding] = []

        def add(kind, where, detail):
            return findings.append(Finding(rel, width, kind, where, detail))  # noqa: E731

        console: list[str] = []
        external: list[str] = []
        page = self.browser.new_page()
        loaded = threading.Event()
        try:

            def on_exception(p):
                d = p["exceptionDetails"]
                desc = d.get("exception", {}).get("description") or d.get("text", "")
                console.append(
                    f"uncaught {desc.strip()} ({_where(d.get('url'), d.get('lineNumber'))})"
                )

            def on_console(p):
                if p["type"] in ("error", "assert"):
                    text = " ".join(_arg_text(a) for a in p.get("args", []))
                    frames = p.get("stackTrace", {}).get("callFrames", [])
                    origin = (
                        _where(frames[0]["url"], frames[0]["lineNumber"])
                        if frames
                        else ""
                    )
                    console.append(
                        f"console.{p['type']}: {text.strip()}"
                        + (f" ({origin})" if origin else "")
                    )

            def on_log(p):
                e = p["entry"]
                if e["level"] == "error":
                    if e.get("url") and e["url"] in external:
                        return  # reported as an external request below
                    console.append(
                        f"{e['source']}: {e['text']}"
                        + (
                            f" ({_where(e.get('url'), e.get('lineNumber'))})"
                            if e.get("url")
                            else ""
                        )
                    )

            page.on("Runtime.exceptionThrown", on_exception)
            page.on("Runtime.consoleAPICalled", on_console)
            page.on("Log.entryAdded", on_log)
            page.on("Page.loadEventFired", lambda p: loaded.set())
            self._route(page, console, external)
            for domain in ("Runtime", "Log", "Page"):
                page.send(f"{domain}.enable")
            page.send(
                "Emulation.setDeviceMetricsOverride",
                {
                    "width": width,
                    "height": VIEWPORT_HEIGHT,
                    "deviceScaleFactor": 1,
                    "mobile": False,
                },
            )
            page.send("Page.navigate", {"url": f"{self.origin}/{rel}"})
            if not loaded.wait(60):
                add("page did not load", "", "no load event in 60 s")
            self._settle(page)
            result = page.evaluate(f"({self.js})({json.dumps(self._options(width))})")
            for f in result["findings"]:
                add(f["kind"], f["where"], f["detail"])
            self._check_colab(rel, result["colab"], add)
            self._screenshot(
                page, rel, width
            )  # the page as checked, before playing anything
            self._check_animations(page, result["animations"], add)
            self._check_live_views(page, add)
            time.sleep(0.2)  # let late console messages arrive
        finally:
            page.close()
        for msg in console:
            reason = next(
                (why for pat, why in KNOWN_HARMLESS_CONSOLE if re.search(pat, msg)),
                None,
            )
            if reason is None:
                add("console error", "", _short(msg, 400))
        for url in dict.fromkeys(external):
            add("external request with no offline copy", "", url)
        return findings

    def _options(self, width: int) -> dict:
        columns = CODE_COLUMNS if width >= DESKTOP_WIDTH else 0
        return {"checkAlt": self.check_alt, "codeColumns": columns}

    def _settle(self, page):
        """Wait for MathJax's first typeset, the fonts and the widget views."""
        page.evaluate(
            """(async () => {
                 if (window.MathJax && MathJax.startup && MathJax.startup.promise) await MathJax.startup.promise;
                 if (document.fonts) await document.fonts.ready;
                 return true; })()""",
            await_promise=True,
            timeout=60,
        )
        deadline = time.monotonic() + WIDGET_WAIT_S
        pending = """(() => {
            if (!document.querySelector('script[type="application/vnd.jupyter.widget-state+json"]')) return 0;
            return [...document.querySelectorAll('script[type="application/vnd.jupyter.widget-view+json"]')]
              .filter(s => !s.parentElement.querySelector('.jupyter-widgets, .widget-subarea > *')).length; })()"""
        while page.evaluate(pending) and time.monotonic() < deadline:
            time.sleep(0.25)
        # widgets may typeset their labels once rendered
        page.evaluate(
            "(async () => { if (window.MathJax && MathJax.typesetPromise) await MathJax.startup.promise; "
            "if (document.fonts) await document.fonts.ready; return true; })()",
            await_promise=True,
            timeout=60,
        )
        if not page.evaluate("[...document.images].every(i => i.complete)"):
            time.sleep(1.0)

    def _check_colab(self, rel: str, links: list[str], add):
        source = self.html_dir / "_sources" / (rel[: -len(".html")] + ".ipynb")
        if not source.exists():
            return
        expected = colab_url(self.repo, rel[: -len(".html")] + ".ipynb")
        if not links:
            add("Colab launch link", "header", f"missing; expected {expected}")
        for href in dict.fromkeys(links):
            if href != expected:
                add(
                    "Colab launch link",
                    "header",
                    f"points at {href}; expected {expected}",
                )

    def _check_animations(self, page, animations: list[dict], add):
        for a in animations:
            label = f"animation {a['index'] + 1}"
            where = a["where"]
            missing = [
                n
                for n, ok in (
                    ("image", a["hasImg"]),
                    ("slider", a["hasSlider"]),
                    ("play button", a["hasPlay"]),
                    ("player script", a["player"]),
                )
                if not ok
            ]
            if missing:
                add(
                    "animation player broken",
                    where,
                    f"{label}: no {', '.join(missing)}",
                )
                continue
            if a["frames"] < 2:
                add(
                    "animation player broken",
                    where,
                    f"{label}: only {a['frames']} frame",
                )
                continue
            sel = f"document.querySelectorAll('div.animation')[{a['index']}]"
            # start from a known frame, then press Play with a real mouse click
            page.evaluate(
                f"anim{a['id']}.pause_animation(), anim{a['id']}.first_frame(), 0"
            )
            before = page.evaluate(
                f"(() => {{ const d = {sel}; return [d.querySelector('input.anim-slider').value, d.querySelector('img').src.length + ':' + d.querySelector('img').src.slice(-40)]; }})()"
            )
            box = page.evaluate(
                f"""(() => {{ const b = {sel}.querySelector('button[title="Play"]');
                    b.scrollIntoView({{block: 'center', inline: 'nearest'}});
                    const r = b.getBoundingClientRect();
                    const x = r.left + r.width / 2, y = r.top + r.height / 2;
                    const hit = document.elementFromPoint(x, y);
                    return {{x, y, w: r.width, h: r.height, ok: !!hit && (hit === b || b.contains(hit)),
                             hit: hit ? hit.tagName + '.' + hit.className : null}}; }})()"""
            )
            if box["w"] == 0 or not box["ok"]:
                add(
                    "animation player broken",
                    where,
                    f"{label}: the Play button cannot be clicked (size {box['w']:.0f}x{box['h']:.0f}, covered by {box['hit']})",
                )
                page.evaluate(
                    f"{sel}.querySelector('button[title=\"Play\"]').click(), 0"
                )
            else:
                for kind in ("mousePressed", "mouseReleased"):
                    page.send(
                        "Input.dispatchMouseEvent",
                        {
                            "type": kind,
                            "x": box["x"],
                            "y": box["y"],
                            "button": "left",
                            "clickCount": 1,
                        },
                    )
            deadline = time.monotonic() + ANIMATION_WAIT_S
            after = before
            while after == before and time.monotonic() < deadline:
                time.sleep(0.1)
                after = page.evaluate(
                    f"(() => {{ const d = {sel}; return [d.querySelector('input.anim-slider').value, d.querySelector('img').src.length + ':' + d.querySelector('img').src.slice(-40)]; }})()"
                )
            page.evaluate(f"anim{a['id']}.pause_animation(), 0")
            if after[0] == before[0]:
                add(
                    "animation does not play",
                    where,
                    f"{label}: frame counter still {before[0]} of {a['frames']} {ANIMATION_WAIT_S:.0f} s after Play",
                )
            elif after[1] == before[1]:
                add(
                    "animation does not play",
                    where,
                    f"{label}: the frame counter moves but the image does not change",
                )
            if a["imgWidth"] > a["width"] + 1:
                add(
                    "output wider than the column",
                    where,
                    f"{label}: its frames are {a['imgWidth']} px in a {a['width']} px player",
                )
        page.evaluate("window.scrollTo(0, 0), 0")

    def _check_live_views(self, page, add):
        """Every live view (sacbook.live) is mounted and drawn; an animated one
        draws new frames once on screen, the squashed Gaussian answers its slider."""
        count = page.evaluate("document.querySelectorAll('.sacbook-live').length")
        for i in range(count):
            root = f"document.querySelectorAll('.sacbook-live')[{i}]"
            # which pixels are drawn, summed up: changes when the picture does
            ink = f"""(() => {{ let n = 0, sum = 0;
                for (const c of {root}.querySelectorAll('canvas')) {{
                  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                  for (let k = 3; k < d.length; k += 4)
                    if (d[k]) {{ n++; sum = (sum * 31 + d[k - 3] + k) % 1e9; }} }}
                return [n, sum]; }})()"""
            where = page.evaluate(
                f"(() => {{ const r = {root}; r.scrollIntoView({{block: 'center'}});"
                " const s = r.closest('section'); const h = s && s.querySelector('h1, h2, h3');"
                " return (h ? '§ ' + h.textContent.replace(/#$/, '').trim().slice(0, 50)"
                " : 'page') + ' (live view ' + (" + str(i) + " + 1) + ')'; })()"
            )
            time.sleep(0.3)
            view = page.evaluate(
                f"(() => {{ const v = {root}.sacbookLive; return v ? "
                "{animated: !!v.stats, frames: v.stats ? v.stats.frames : 0} : null; })()"
            )
            if view is None:
                add(
                    "live view not running",
                    where,
                    "mount() never ran (a script error?)",
                )
                continue
            before = page.evaluate(ink)
            if before[0] == 0:
                add("live view blank", where, "its canvases are empty")
            if view["animated"]:
                time.sleep(LIVE_WAIT_S)
                frames = page.evaluate(f"{root}.sacbookLive.stats.frames")
                if frames - view["frames"] < 3 or page.evaluate(ink) == before:
                    add(
                        "live view does not animate",
                        where,
                        f"{frames - view['frames']} frames in {LIVE_WAIT_S:.0f} s on screen",
                    )
            else:
                page.evaluate(
                    f"(() => {{ const s = {root}.querySelector('input[type=range]');"
                    " s.value = s.max; s.dispatchEvent(new Event('input')); return 0; })()"
                )
                if page.evaluate(ink) == before:
                    add(
                        "live view does not answer",
                        where,
                        "its picture ignores a slider",
                    )
        page.evaluate("window.scrollTo(0, 0), 0")

    def _screenshot(self, page, rel: str, width: int):
        page.evaluate("window.scrollTo(0, 0), 0")
        size = page.send("Page.getLayoutMetrics")["cssContentSize"]
        # JPEG: a full chapter is ~25,000 px tall, and PNG-encoding it takes 3x longer
        shot = page.send(
            "Page.captureScreenshot",
            {
                "format": "jpeg",
                "quality": 70,
                "captureBeyondViewport": True,
                "clip": {
                    "x": 0,
                    "y": 0,
                    "width": size["width"],
                    "height": min(size["height"], 60000),
                    "scale": 1,
                },
            },
            timeout=120,
        )
        name = rel[: -len(".html")].replace("/", "_") + f"_{width}.jpg"
        (self.screenshots / name).write_bytes(base64.b64decode(shot["data"]))


def _arg_text(arg: dict) -> str:
    if "value" in arg:
        return str(arg["value"])
    return (
        arg.get("description") or arg.get("unserializableValue") or arg.get("type", "")
    )


def _where(url, line) -> str:
    if not url:
        return ""
    url = re.sub(r"^http://127\.0\.0\.1:\d+/", "", url)
    return f"{url}:{(line or 0) + 1}"


def _short(text: str, n: int) -> str:
    text = re.sub(r"\s+", " ", text).strip()
    return text if len(text) <= n else text[: n - 3] + "..."


def report(findings: list[Finding], examples: int | None = 8) -> str:
    """Findings grouped by page, width and kind: a count and the first examples of each."""
    lines = []
    groups: dict[tuple, list[Finding]] = defaultdict(list)
    for f in findings:
        groups[(f.page, f.width, f.kind)].append(f)
    for (page, width, kind), fs in groups.items():
        lines.append(f"{page} @ {width}px: {kind} x{len(fs)}")
        for f in fs[:examples]:
            lines.append(f"    {f.where + ': ' if f.where else ''}{f.detail}")
        if examples is not None and len(fs) > examples:
            lines.append(f"    ... and {len(fs) - examples} more")
    return "\n".join(lines)


def main(argv=None):
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("html", nargs="?", default=str(ROOT / "_build" / "html"))
    ap.add_argument("--out", default=str(ROOT / "_build" / "screenshots"))
    ap.add_argument(
        "--page", action="append", help="only these pages (paths in the site)"
    )
    ap.add_argument("--no-alt", action="store_true", help="do not check alt text")
    args = ap.parse_args(argv)
    t0 = time.monotonic()
    findings = []
    with BookChecker(
        Path(args.html), Path(args.out), check_alt=not args.no_alt
    ) as checker:
        for note in checker.notes:
            print("note:", note)
        for rel in args.page or toc_pages():
            fs = checker.check_page(rel)
            findings += fs
            counts = Counter(f.kind for f in fs)
            print(
                f"{rel}: {checker.timings[rel]:.1f} s, {len(fs)} finding(s) {dict(counts) if counts else ''}",
                flush=True,
            )
    print(report(findings, examples=None))
    (Path(args.out) / "findings.txt").write_text("\n".join(map(str, findings)) + "\n")
    print(f"screenshots and findings.txt in {args.out}; {time.monotonic() - t0:.0f} s")
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
