"""Copy the repository address and release from _config.yml wherever they are needed.

Both live in one place, ``repository.url`` and ``repository.release`` in
``_config.yml``. Colab cannot read that file, so each notebook's setup cell,
the README and the landing page carry copies; this script rewrites them, and
``tests/test_book.py`` checks they agree.
Usage, after editing _config.yml:  python scripts/set_repo_url.py
"""

import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
INSTALL = re.compile(
    r"git\+https://github\.com/[\w.-]+/[\w.-]+?(?:\.git)?(?:@[\w.-]+)?(?=[\"'\s]|$)"
)
COLAB = re.compile(r"colab\.research\.google\.com/github/[\w.-]+/[\w.-]+/")


def configured() -> tuple[str, str]:
    """``(url, release)`` from _config.yml's ``repository`` section."""
    text = (ROOT / "_config.yml").read_text()
    section = re.search(r"^repository:\s*\n((?:[ \t]+.*\n)+)", text, re.M)
    if not section:
        sys.exit("no repository: section in _config.yml")
    values = dict(re.findall(r"^\s+(url|release):\s*(\S+)", section.group(1), re.M))
    if "url" not in values or "release" not in values:
        sys.exit(
            "repository.url and repository.release must both be set in _config.yml"
        )
    return values["url"].rstrip("/"), values["release"]


def rewrite(text: str, url: str, release: str) -> str:
    """Point every install line and Colab link in ``text`` at ``url``/``release``."""
    text = INSTALL.sub(f"git+{url}@{release}", text)
    owner_repo = url.removeprefix("https://github.com/")
    return COLAB.sub(f"colab.research.google.com/github/{owner_repo}/", text)


def main() -> None:
    url, release = configured()
    if not re.fullmatch(r"https://github\.com/[\w.-]+/[\w.-]+", url):
        sys.exit(
            f"repository.url must be a https://github.com/OWNER/REPO address, got {url}"
        )
    for path in sorted((ROOT / "book").glob("*.ipynb")):
        nb = json.loads(path.read_text())
        first = next(c for c in nb["cells"] if c["cell_type"] == "code")
        source = "".join(first["source"])
        new = rewrite(source, url, release)
        if new != source:
            first["source"] = new.splitlines(keepends=True)
            path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
            print(f"updated {path.relative_to(ROOT)}")
    for path in (ROOT / "README.md", ROOT / "book" / "intro.md"):
        text = path.read_text()
        new = rewrite(text, url, release)
        if new != text:
            path.write_text(new)
            print(f"updated {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
