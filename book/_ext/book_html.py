"""Small fixes to the HTML pages Jupyter Book 1.x writes for this book.

Loaded through ``sphinx: local_extensions`` in ``_config.yml``. Each fix answers
a fault a browser showed (``tests/test_browser.py`` checks every page):

- sphinx-thebe's inline ``const THEBE_JS_URL = ...`` script (and sphinx-
  togglebutton's) reach every page twice, and the second ``const`` is a
  SyntaxError in the console. Repeated scripts are dropped here.
- pydata-sphinx-theme reads ``default_mode`` from the page context; Jupyter
  Book leaves it empty, and the theme logs "Got invalid theme mode". The
  book opens in light mode (its figures are drawn on white); the reader's
  own choice in the theme switcher still wins.
- ``static/sacbook.css``: code set so that 88 columns fit the column at
  desktop widths, wrapped instead of cut on narrow screens, and tables and
  equations that fit a phone.
- ``static/widgets-fixes.js``: the Jupyter widgets page manager typesets with
  MathJax 2's ``MathJax.Hub.Queue``; this book loads MathJax 3.
- The widgets page manager finds its fonts relative to the URL require.js gives
  its module, which without configuration is the page's own folder (404s in the
  console). Pages that load the manager first tell require.js where it lives.
- ``book_bibliography.py`` (set up from here): the bibliography's list showed
  alphabetic labels ([HZAL18]) beside author-year citations in the text, and
  sorted accented and corporate authors last. It registers the author-year
  label, sorting and citation styles that ``_config.yml``'s ``bibtex_*`` keys name.
"""

import json
from pathlib import Path

STATIC = Path(__file__).parent / "static"


def _add_static_path(app):
    app.config.html_static_path.append(str(STATIC))


def _fix_page(app, pagename, templatename, context, doctree):
    scripts = context.get("script_files")
    if scripts:
        seen, kept = set(), []
        for script in scripts:
            attributes = getattr(script, "attributes", {}) or {}
            # an inline script's filename is None or "" depending on who added it
            name = getattr(script, "filename", script) or ""
            key = (str(name), tuple(attributes.items()))
            if key not in seen:
                seen.add(key)
                kept.append(script)
        scripts[:] = kept
    if not context.get("default_mode"):
        context["default_mode"] = "light"


def _widget_manager_home(app, pagename, templatename, context, doctree):
    """Map the widget manager's require.js module name to the folder it is loaded
    from, so that the fonts its styles name resolve there."""
    for script in context.get("script_files", []):
        url = str(getattr(script, "filename", "") or "")
        marker = "/@jupyter-widgets/html-manager@"
        if marker in url and url.endswith("/dist/embed-amd.js"):
            home = url[: -len("/dist/embed-amd.js")]
            # read by require.js when it starts (it loads after this, at 500)
            paths = json.dumps({"paths": {"@jupyter-widgets/html-manager": home}})
            app.add_js_file(None, body=f"var require = {paths};", priority=210)
            return


def setup(app):
    # a sibling module (book/_ext is on sys.path): the bibliography's styles
    app.setup_extension("book_bibliography")
    app.connect("builder-inited", _add_static_path)
    # last, after the extensions that add their scripts while a page is written
    app.connect("html-page-context", _fix_page, priority=900)
    app.connect("html-page-context", _widget_manager_home, priority=910)
    app.add_css_file("sacbook.css")
    # before the widget manager (500), so the shim sees MathJax 3 arrive
    app.add_js_file("widgets-fixes.js", priority=200)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
