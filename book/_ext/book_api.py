"""The API reference (``book/api.md``): what autodoc shows of sacbook's classes.

Loaded through ``sphinx: local_extensions`` in ``_config.yml``, beside
``sphinx.ext.autodoc`` and ``sphinx.ext.napoleon``. Two fixes, each to
something the built page showed:

- A dataclass's ``__init__`` is generated, so autodoc can only print its
  defaults' reprs: ``env=PendulumParams(g=10.0, l=1.0, ..., body='rod')``,
  ``activation=<jax._src.custom_derivatives.custom_jvp object>``, hundreds of
  characters that no phone fits. Here a dataclass's signature shows each
  default as the class body writes it (``env=PendulumParams.gymnasium()``,
  ``activation=nn.relu``; the value's repr where the body calls a ``field``
  function), and a Flax module's signature leaves out the ``parent`` and
  ``name`` every Flax module takes.
- A class's members include what it holds from other libraries: the
  ``replace`` method of every ``flax.struct`` dataclass, and a Flax module's
  ``activation`` field, whose value (``nn.relu``) brings JAX's docstring.
  Only members defined in sacbook are listed.
- napoleon reads the first line of a property's docstring as ``type:
  description`` (Google style's inline type), so ``Iterations of random
  actions: ``ceil(...)``...`` came out as a "Type: Iterations of random
  actions". sacbook writes no such types (a property's annotation gives it);
  a property's or attribute's docstring is shown as written.

``static/api.css`` lets a long signature wrap on a narrow screen.
"""

import ast
import dataclasses
import inspect
import textwrap
from pathlib import Path

STATIC = Path(__file__).parent / "static"
PACKAGE = "sacbook"


class _Source:
    """A default value shown as its source text."""

    def __init__(self, text: str):
        self.text = text

    def __repr__(self) -> str:
        return self.text


def _is_field_call(node) -> bool:
    """``dataclasses.field(...)``, ``checks.real_field(...)``: a field's spec,
    not its default (the default's repr says more)."""
    if not isinstance(node, ast.Call):
        return False
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
    return name.endswith("field")


def _written_defaults(cls) -> dict[str, str]:
    """Each field default as the class body writes it; a subclass's own wins."""
    found = {}
    for klass in reversed(cls.__mro__):
        try:
            source = textwrap.dedent(inspect.getsource(klass))
        except (OSError, TypeError):
            continue  # a builtin or a class without source
        node = ast.parse(source).body[0]
        if not isinstance(node, ast.ClassDef):
            continue
        for item in node.body:
            if (
                isinstance(item, ast.AnnAssign)
                and isinstance(item.target, ast.Name)
                and item.value is not None
            ):
                if _is_field_call(item.value):
                    found.pop(item.target.id, None)
                else:
                    found[item.target.id] = ast.get_source_segment(source, item.value)
    return found


def _is_flax_module(cls) -> bool:
    return any(
        k.__name__ == "Module" and k.__module__.startswith("flax.linen")
        for k in cls.__mro__
    )


def _dataclass_signature(app, what, name, obj, options, signature, return_annotation):
    if what != "class" or not dataclasses.is_dataclass(obj) or signature is None:
        return None
    try:
        parameters = list(inspect.signature(obj).parameters.values())
    except (TypeError, ValueError):
        return None
    if _is_flax_module(obj):
        parameters = [p for p in parameters if p.name not in ("parent", "name")]
    written = _written_defaults(obj)
    shown = []
    for p in parameters:
        default = p.default
        if default is not p.empty and p.name in written:
            default = _Source(written[p.name])
        shown.append(p.replace(annotation=p.empty, default=default))
    return str(inspect.Signature(shown)), return_annotation


def _defined_elsewhere(obj) -> bool:
    """A callable member whose code lives outside sacbook."""
    target = getattr(obj, "fget", None) or getattr(obj, "__func__", None) or obj
    if not callable(target) or isinstance(target, type):
        return False
    module = getattr(target, "__module__", None) or ""
    return not (module == PACKAGE or module.startswith(PACKAGE + "."))


def _skip_foreign_members(app, what, name, obj, skip, options):
    if what in ("class", "exception") and _defined_elsewhere(obj):
        return True
    return None


_AS_WRITTEN = ("property", "attribute", "data")


def _keep_written(app, what, name, obj, options, lines):
    """Before napoleon: remember the docstring as written."""
    if what in _AS_WRITTEN:
        app.env.temp_data.setdefault("book_api_written", {})[name] = list(lines)


def _restore_written(app, what, name, obj, options, lines):
    """After napoleon: put it back."""
    written = app.env.temp_data.get("book_api_written", {}).pop(name, None)
    if what in _AS_WRITTEN and written is not None:
        lines[:] = written


def _add_static_path(app):
    if str(STATIC) not in map(str, app.config.html_static_path):
        app.config.html_static_path.append(str(STATIC))


def setup(app):
    app.setup_extension("sphinx.ext.autodoc")
    app.connect("builder-inited", _add_static_path)
    app.connect("autodoc-process-signature", _dataclass_signature)
    app.connect("autodoc-skip-member", _skip_foreign_members)
    # sphinx.ext.napoleon processes docstrings at the default priority, 500
    app.connect("autodoc-process-docstring", _keep_written, priority=400)
    app.connect("autodoc-process-docstring", _restore_written, priority=600)
    app.add_css_file("api.css")
    return {"parallel_read_safe": True, "parallel_write_safe": True}
