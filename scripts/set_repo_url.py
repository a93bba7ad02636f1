"""Copy the repository address from _config.yml into every place that needs it.

The address lives in one place, ``repository.url`` in ``_config.yml``. Colab
cannot read that file, so each notebook's first cell and the README carry a
copy; this script rewrites the copies, and ``tests/test_book.py`` checks they
agree. Usage, after editing _config.yml:  python scripts/set_repo_url.py
"""

import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
INSTALL = re.compile(r"git\+(https://github\.com/[\w.-]+/[\w.-]+)")


def configured_url() -> str:
    match = re.search(r"^repository:\s*\n(?:\s+.*\n)*?\s+url:\s*(\S+)", (ROOT / "_config.yml").read_text(), re.M)
    if not match:
        sys.exit("repository.url not found in _config.yml")
    return match.group(1).rstrip("/")


def current_url() -> str:
    """The address the copies carry now: the one in Chapter 1's install cell."""
    nb = json.loads((ROOT / "book" / "01_physics.ipynb").read_text())
    first = next(c for c in nb["cells"] if c["cell_type"] == "code")
    match = INSTALL.search("".join(first["source"]))
    if not match:
        sys.exit("no 'git+https://github.com/...' install line in book/01_physics.ipynb's first cell")
    return match.group(1)


def rewrite(text: str, old: str, new: str) -> str:
    """Replace the old address, and its Colab form, by the new one."""
    text = text.replace(old, new)
    old_path, new_path = old.removeprefix("https://github.com/"), new.removeprefix("https://github.com/")
    return text.replace(f"colab.research.google.com/github/{old_path}/", f"colab.research.google.com/github/{new_path}/")


def main() -> None:
    url = configured_url()
    old = current_url()
    if not url.startswith("https://github.com/"):
        sys.exit(f"repository.url must be a https://github.com/OWNER/REPO address, got {url}")
    for path in sorted((ROOT / "book").glob("*.ipynb")):
        nb = json.loads(path.read_text())
        first = next(c for c in nb["cells"] if c["cell_type"] == "code")
        source = "".join(first["source"])
        new = rewrite(source, old, url)
        if new != source:
            first["source"] = new.splitlines(keepends=True)
            path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
            print(f"updated {path.relative_to(ROOT)}")
    for path in (ROOT / "README.md", ROOT / "book" / "intro.md"):
        text = path.read_text()
        new = rewrite(text, old, url)
        if new != text:
            path.write_text(new)
            print(f"updated {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
