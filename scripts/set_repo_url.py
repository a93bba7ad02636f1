"""Copy the repository address and release from _config.yml wherever they are needed.

Both live in one place, ``repository.url`` and ``repository.release`` in
``_config.yml``. Colab cannot read that file, so each notebook's setup cell,
the README and the landing page carry copies; this script rewrites them, and
``tests/test_book.py`` checks they agree.

It also sets ``repository.branch`` to the release: Jupyter Book's Colab launch
button opens the notebooks of ``branch``, and they must be the notebooks of the
release that their setup cell installs, not of whatever ``main`` holds later.
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
COLAB = re.compile(
    r"colab\.research\.google\.com/github/[\w.-]+/[\w.-]+/(?P<ref>blob/[\w.-]+/)?"
)
SECTION = re.compile(r"^repository:\s*\n((?:[ \t]+.*\n)+)", re.M)


def configured() -> tuple[str, str]:
    """``(url, release)`` from _config.yml's ``repository`` section."""
    text = (ROOT / "_config.yml").read_text()
    section = SECTION.search(text)
    if not section:
        sys.exit("no repository: section in _config.yml")
    values = dict(re.findall(r"^\s+(url|release):\s*(\S+)", section.group(1), re.M))
    if "url" not in values or "release" not in values:
        sys.exit(
            "repository.url and repository.release must both be set in _config.yml"
        )
    return values["url"].rstrip("/"), values["release"]


def set_branch(config: str, release: str) -> str:
    """``config`` (the text of _config.yml) with ``repository.branch`` set to
    ``release``, its comment kept; added after ``release:`` if missing."""
    section = SECTION.search(config)
    body = section.group(1)
    if re.search(r"^[ \t]+branch:", body, re.M):
        new = re.sub(
            r"^([ \t]+branch:[ \t]*)[^\s#]+",
            lambda m: m.group(1) + release,
            body,
            count=1,
            flags=re.M,
        )
    else:
        new = re.sub(
            r"^([ \t]+)release:.*\n",
            lambda m: f"{m.group(0)}{m.group(1)}branch: {release}\n",
            body,
            count=1,
            flags=re.M,
        )
    return config[: section.start(1)] + new + config[section.end(1) :]


def rewrite(text: str, url: str, release: str) -> str:
    """Point every install line and Colab link in ``text`` at ``url``/``release``
    (a Colab link to a notebook opens it at the release, as the launch button does)."""
    text = INSTALL.sub(f"git+{url}@{release}", text)
    owner_repo = url.removeprefix("https://github.com/")

    def colab(match: re.Match) -> str:
        ref = f"blob/{release}/" if match.group("ref") else ""
        return f"colab.research.google.com/github/{owner_repo}/{ref}"

    return COLAB.sub(colab, text)


def main() -> None:
    url, release = configured()
    if not re.fullmatch(r"https://github\.com/[\w.-]+/[\w.-]+", url):
        sys.exit(
            f"repository.url must be a https://github.com/OWNER/REPO address, got {url}"
        )
    config = ROOT / "_config.yml"
    text = config.read_text()
    new = set_branch(text, release)
    if new != text:
        config.write_text(new)
        print(f"updated _config.yml: repository.branch = {release}")
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
