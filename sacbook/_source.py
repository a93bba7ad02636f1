"""Show the package's own source in a notebook, so the book never drifts from the
code; optionally a view of it with the parts for later chapters left out.

The training code serves one run on one device, sweeps and meshes of devices
alike. The lines only sweeps or devices need carry a tag comment, ``# [sweep]``
or ``# [devices]`` (``# [devices]: why`` keeps the why). ``hide=("sweep",
"devices")`` gives the view a reader meets first: the tagged lines go, a
tagged parameter goes from the signature, from every call that passes it on
and from the docstring's ``Args``. Without ``hide`` the tags read as plain
comments. Nothing is copied by hand: the view is computed from the source.
"""

import inspect
import re

# a trailing (or whole-line) tag comment: "# [devices]" or "# [devices]: why"
_TAG = re.compile(r"\s*#\s*\[(?P<tag>\w+)\]:?\s?(?P<why>.*)$")


def source_text(obj, hide=()) -> str:
    """The source of ``obj``, less what the tags in ``hide`` mark (see the
    module docstring)."""
    kept, dropped = [], set()
    for line in inspect.getsource(obj).splitlines():
        tag = _TAG.search(line)
        if tag is None:
            kept.append(line)
            continue
        code = line[: tag.start()]
        if tag["tag"] in hide:
            parameter = re.match(r"\s*(\w+)\s*[:=].*,\s*$", code)
            if parameter and code.startswith("    ") and not code.startswith("     "):
                dropped.add(parameter[1])
            continue
        why = f"  # {tag['why']}" if tag["why"] else ""
        kept.append((code + why) if code.strip() else f"{code}# {tag['why']}")
    text = "\n".join(line.rstrip() for line in kept if line.strip() != "#")
    for name in dropped:
        text = _drop_argument(text, name)
    return _drop_arg_docs(text, dropped) + "\n"


def _drop_argument(text: str, name: str) -> str:
    """``f(a, name)`` and ``f(a, name=name)`` become ``f(a)``."""
    text = re.sub(rf",\s*{name}=\w+(?=\s*[,)])", "", text)
    return re.sub(rf",\s*{name}(?=\s*[,)])", "", text)


def _drop_arg_docs(text: str, names: set) -> str:
    """Drop the docstring entries ``name: ...`` (and their indented
    continuation lines) whose names are all in ``names``; an ``Args:`` left
    empty goes too."""
    lines, out, skip_deeper = text.split("\n"), [], None
    for line in lines:
        indent = len(line) - len(line.lstrip())
        if skip_deeper is not None and line.strip() and indent > skip_deeper:
            continue
        skip_deeper = None
        entry = re.match(
            r"\s+((?:\w+|``\w+``)(?:\s*(?:,|and)\s*(?:\w+|``\w+``))*):\s", line
        )
        if entry:
            entry_names = set(re.findall(r"\w+", entry[1])) - {"and"}
            if entry_names and entry_names <= names:
                skip_deeper = indent
                continue
        out.append(line)
    cleaned = []
    for i, line in enumerate(out):
        following = out[i + 1] if i + 1 < len(out) else ""
        if line.strip() == "Args:" and len(following) - len(following.lstrip()) <= len(
            line
        ) - len(line.lstrip()):
            continue  # an Args: section with nothing left in it
        cleaned.append(line)
    # no blank line left just before a docstring's closing quotes
    return re.sub(r'\n[ \t]*\n([ \t]*""")', r"\n\1", "\n".join(cleaned))


def show_source(obj, hide=()):
    """Display the source of a function, class or module, syntax-highlighted;
    ``hide``: tags whose lines to leave out (``("sweep", "devices")``).

    Works in Jupyter, Colab and the rendered book (``IPython.display.Code``).
    """
    from IPython.display import Code

    return Code(source_text(obj, hide), language="python")
