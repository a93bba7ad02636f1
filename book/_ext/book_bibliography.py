"""Author-year labels for the bibliography, the same in the text and in the list.

Loaded by ``book_html.py`` (``app.setup_extension``), so ``_config.yml`` only names
the styles registered here:

- ``bibtex_default_style: sacbook``, the pybtex formatting style of the list on
  ``book/bibliography.md``: pybtex's ``unsrt`` entries, sorted by
  ``sacbook_author_year_title`` and labelled by ``sacbook_author_year``.
- ``bibtex_reference_style: sacbook_author_year``, the in-text citations of
  ``{cite:p}`` and ``{cite:t}``: sphinxcontrib-bibtex's ``author_year`` with the
  authors and the year taken from the list's label.

Labels: one author "Lange, 2022", two "Åström and Furuta, 2000", three or more (or a
list ending in ``and others``) "Haarnoja et al., 2018". Works whose labels would
otherwise be the same get the suffixes a, b, ... in the order of the list
("Haarnoja et al., 2018a" and "2018b"), and the text cites them the same way,
because it reads the year back from the label.

Sorting: by the authors' names as a reader sees them, without accents and braces
(Åström under A, ``{DeepMind}`` under D), then the year, then the title.
"""

import re
import unicodedata
from collections import Counter
from dataclasses import dataclass
from string import ascii_lowercase

import pybtex.plugin
from pybtex.richtext import Text
from pybtex.style.formatting.unsrt import Style as UnsrtStyle
from pybtex.style.labels import BaseLabelStyle
from pybtex.style.sorting import BaseSortingStyle
from pybtex.style.template import FieldIsMissing, sentence
from pybtex.style.template import join as pybtex_join
from pybtex.style.template import node as pybtex_node
from sphinxcontrib.bibtex.plugin import register_plugin as register_reference_style
from sphinxcontrib.bibtex.style.referencing.author_year import (
    AuthorYearReferenceStyle,
)
from sphinxcontrib.bibtex.style.referencing.basic_author_year import (
    BasicAuthorYearParentheticalReferenceStyle,
    BasicAuthorYearTextualReferenceStyle,
)
from sphinxcontrib.bibtex.style.referencing.extra_year import (
    ExtraYearReferenceStyle,
)
from sphinxcontrib.bibtex.style.template import (
    join,
    join2,
    node,
    post_text,
    pre_text,
    reference,
)

NAME = "sacbook"
SEPARATOR = ", "  # between the authors and the year in a label


# --- names --------------------------------------------------------------------------


def _persons(entry):
    """The authors (else the editors) and whether the list ends in ``and others``."""
    persons = list(entry.persons.get("author") or entry.persons.get("editor") or [])
    truncated = bool(persons) and str(persons[-1]).strip().lower() == "others"
    if truncated:
        persons = persons[:-1]
    return persons, truncated


def _surname(person) -> str:
    """A person's surname as printed: LaTeX accents decoded, braces gone
    (``{\\AA}str{\\"o}m`` is Åström, ``van Hoof`` keeps its ``van``)."""
    parts = [*person.rich_prelast_names, *person.rich_last_names]
    return " ".join(str(part) for part in parts)


def _authors(entry) -> str:
    persons, truncated = _persons(entry)
    names = [_surname(p) for p in persons]
    if not names:
        return str(Text.from_latex(entry.fields.get("title", "Anonymous")))
    if len(names) >= 3 or truncated:
        return f"{names[0]} et al."
    return " and ".join(names)


def _fold(text: str) -> str:
    """A sort key: accents dropped (Å to A), braces and case ignored."""
    decomposed = unicodedata.normalize("NFKD", text)
    plain = "".join(c for c in decomposed if not unicodedata.combining(c))
    return re.sub(r"[{}\\]", "", plain).casefold()


# --- pybtex: labels, sorting, formatting --------------------------------------------


class AuthorYearLabelStyle(BaseLabelStyle):
    """Labels "Haarnoja et al., 2018a": authors, year, and a suffix where two
    entries of the list would otherwise share a label."""

    def format_labels(self, sorted_entries):
        sorted_entries = list(sorted_entries)
        bases = [
            f"{_authors(e)}{SEPARATOR}{e.fields.get('year', 'n.d.')}"
            for e in sorted_entries
        ]
        counts, seen = Counter(bases), Counter()
        for base in bases:
            if counts[base] == 1:
                yield base
            else:
                yield base + ascii_lowercase[seen[base]]
                seen[base] += 1


class AuthorYearTitleSortingStyle(BaseSortingStyle):
    """By the authors' surnames (then first names) as printed, folded, then year,
    then title."""

    def sorting_key(self, entry):
        persons, truncated = _persons(entry)
        names = [
            f"{_fold(_surname(p))} {_fold(' '.join(map(str, p.rich_first_names)))}"
            for p in persons
        ]
        if truncated:
            names.append("\uffff")  # "X and others" after every "X and Y"
        title = _fold(str(Text.from_latex(entry.fields.get("title", ""))))
        return ("  ".join(names) or title, entry.fields.get("year", ""), title)


@pybtex_node
def names_et_al(children, context, role):
    """``unsrt``'s list of names, with a closing ``and others`` printed "et al."."""
    if children:
        raise ValueError(children)
    if role not in context["entry"].persons:
        raise FieldIsMissing(role, context["entry"])
    style = context["style"]
    persons = list(context["entry"].persons[role])
    truncated = str(persons[-1]).strip().lower() == "others"
    names = [
        style.format_name(p, style.abbreviate_names)
        for p in (persons[:-1] if truncated else persons)
    ]
    if truncated:
        return Text(pybtex_join(sep=", ")[names].format_data(context), " et al.")
    return pybtex_join(sep=", ", sep2=" and ", last_sep=", and ")[names].format_data(
        context
    )


class Style(UnsrtStyle):
    """pybtex's ``unsrt`` entries with author-year labels, sorted by author."""

    default_label_style = f"{NAME}_author_year"
    default_sorting_style = f"{NAME}_author_year_title"

    def format_names(self, role, as_sentence=True):
        formatted = names_et_al(role)
        return sentence[formatted] if as_sentence else formatted


# --- sphinxcontrib-bibtex: in-text citations ----------------------------------------


def _label_parts(data):
    label = data["formatted_entry"].label
    authors, _, year = label.rpartition(SEPARATOR)
    return authors, year


@node
def label_authors(children, data):
    """The authors part of the entry's label ("Haarnoja et al.")."""
    assert not children
    return Text(_label_parts(data)[0])


@node
def label_year(children, data):
    """The year part of the entry's label, suffix included ("2018a")."""
    assert not children
    return Text(_label_parts(data)[1])


def _cited_authors(style, role_name):
    """Every author for {cite:ps} and {cite:ts}, else the label's."""
    if "s" in role_name:
        return style.person.author_or_editor_or_title(full=True)
    return label_authors


@dataclass
class _Parenthetical(BasicAuthorYearParentheticalReferenceStyle):
    def inner(self, role_name):
        authors = _cited_authors(self, role_name)
        return join2(sep1=self.pre_text_sep, sep2=self.post_text_sep)[
            pre_text,
            reference[join(sep=self.author_year_sep)[authors, label_year]],
            post_text,
        ]


@dataclass
class _Textual(BasicAuthorYearTextualReferenceStyle):
    def inner(self, role_name):
        authors = _cited_authors(self, role_name)
        return join(sep=self.text_reference_sep)[
            authors,
            join[
                self.bracket.left,
                join2(sep1=self.pre_text_sep, sep2=self.post_text_sep)[
                    pre_text, reference[label_year], post_text
                ],
                self.bracket.right,
            ],
        ]


@dataclass
class _Year(ExtraYearReferenceStyle):
    def inner(self, role_name):
        return reference[label_year]


@dataclass
class ReferenceStyle(AuthorYearReferenceStyle):
    """sphinxcontrib-bibtex's ``author_year``, with the authors and the year (and its
    a/b suffix) read from the bibliography's label."""

    def __post_init__(self):
        super().__post_init__()
        replacements = {
            BasicAuthorYearParentheticalReferenceStyle: _Parenthetical,
            BasicAuthorYearTextualReferenceStyle: _Textual,
            ExtraYearReferenceStyle: _Year,
        }
        for i, style in enumerate(self.styles):
            new = replacements.get(type(style))
            if new is not None:
                kept = {k: v for k, v in vars(style).items() if k != "style_plugin"}
                self.styles[i] = new(**kept)
        self.role_style.update(
            (role, style) for style in self.styles for role in style.role_names()
        )


def setup(app):
    pybtex.plugin.register_plugin(
        "pybtex.style.labels", f"{NAME}_author_year", AuthorYearLabelStyle
    )
    pybtex.plugin.register_plugin(
        "pybtex.style.sorting", f"{NAME}_author_year_title", AuthorYearTitleSortingStyle
    )
    pybtex.plugin.register_plugin("pybtex.style.formatting", NAME, Style)
    register_reference_style(
        "sphinxcontrib.bibtex.style.referencing", f"{NAME}_author_year", ReferenceStyle
    )
    return {"parallel_read_safe": True, "parallel_write_safe": True}
