"""The chapters' prose against their own outputs, and their exercises' shape.

**Numbers the prose quotes.** Where a page's text quotes a number that one of
its cells prints (an iteration count, a time, a return), :data:`CLAIMS` pairs a
pattern in the prose with a pattern in the outputs, and the test checks that
they agree. Re-executing a chapter on another machine changes its outputs; if
the text no longer says what the outputs show, this test fails and names the
sentence. Reading files only: nothing is executed.

**Exercises.** Each exercise is a ``tip`` admonition titled "Exercise ...".
Its solution code cells are hidden in the rendered book, code and output
(``hide-cell``), collapsed in JupyterLab and Notebook 7
(``jupyter.source_hidden`` and ``outputs_hidden``), shown as a form with its
code hidden on Colab (``cellView: form``), and still executed and checked by
nbval. Its written solution is a ``dropdown`` admonition.
"""

import dataclasses
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "book").glob("*.ipynb"))
N = NUMBER = r"(-?\d[\d,]*(?:\.\d+)?)"


@dataclasses.dataclass(frozen=True)
class Claim:
    """A number in the prose of ``notebook`` and where its outputs show it.

    Attributes:
      notebook: the notebook's stem, e.g. ``"03_sac"``.
      prose: a regular expression over the markdown, its white space runs
        made single spaces; its groups are numbers (:data:`N`).
      output: a regular expression over the text outputs; its groups too.
      relation: ``"equal"``: every number the prose matches equals one the
        outputs match (as printed, after dropping thousands commas);
        ``"bounds"``: the prose gives ``low`` and ``high`` (two groups) and
        every output match lies within them; ``"at_most"``/``"at_least"``:
        the prose gives one bound and every output match keeps to it;
        ``"about"``: every number the prose matches is within 10% of one the
        outputs match (for "about 20" against a printed 20.3).
    """

    notebook: str
    prose: str
    output: str
    relation: str = "equal"


CLAIMS = (
    Claim(
        "01_physics",
        rf"halves it \({N} to {N}\)",
        rf"semi-implicit errs by at most\s+{N}",
        "about",
    ),
    Claim("01_physics", rf"\\approx {N}\$ N m", rf"tau >= {N} N m"),
    Claim(
        "01_physics", rf"rod needs about {N} N m", rf"over the top from tau = {N} N m"
    ),
    Claim("03_sac", rf"on {N} fixed starting states", rf"eval_envs\s+{N}"),
    Claim("03_sac", rf"judged on {N} fixed starts", rf"eval_envs\s+{N}"),
    Claim(
        "03_sac",
        rf"reach \$-200\$ after {N} to {N} environment steps",
        rf"solved at\s+{N} env steps",
        "bounds",
    ),
    Claim(
        "03_sac",
        rf"about ±{N} with 16 starts",
        rf"mean over 16 starts: -?[\d.]+ ± {N}",
        "about",
    ),
    Claim(
        "03_sac",
        rf"from 1 to about {N}, close",
        rf"learned alpha: .* alpha {N}",
        "about",
    ),
    Claim(
        "appendix_hyperparameters",
        rf"Fewest sequential updates: .*?, {N} iterations, {N} updates, from a single",
        rf"fewest updates: .*: {N} iterations, {N} updates",
    ),
    Claim(
        "appendix_hyperparameters",
        rf"{N} iterations, {N} updates, in {N} s",
        rf"least time: .*: {N} iterations, {N} updates, {N} s",
    ),
    Claim(
        "appendix_hyperparameters",
        rf"\({N} s against",
        rf"fewest updates: .*, {N} s",
        "about",
    ),
    # Chapter 4: the default recipe over seeds (Section 4)
    Claim(
        "04_gpu_scaling",
        rf"In this run {N} of {N} seeds solve",
        rf"solved {N} of {N} seeds",
    ),
    Claim(
        "04_gpu_scaling",
        rf"seeds solve, after {N} to {N} iterations",
        rf"seeds, after {N} to {N} iterations",
    ),
    Claim(
        "04_gpu_scaling",
        rf"train for about {N} times as long as seed 0 alone",
        rf"{N} times the [\d.]+ s of seed 0 trained alone",
        "about",
    ),
    # Section 5: the gradients averaged per update, the buffer's shard
    Claim(
        "04_gpu_scaling",
        rf"about {N} kB \(above\)",
        rf"gradients averaged per update: {N} kB",
        "about",
    ),
    Claim(
        "04_gpu_scaling",
        rf"\({N} of its million rows\)",
        rf"buffer\.data\.obs \(\d+, 3\) +P\('data', None\) +\({N}, 3\)",
    ),
    # Section 6: the bars the controller sets
    Claim(
        "04_gpu_scaling",
        rf"The rule reproduces \${N}\$ on the Gymnasium pendulum",
        rf"gymnasium: controller .* -> bar {N}",
    ),
    Claim(
        "04_gpu_scaling",
        rf"on the point-mass preset the bar is \${N}\$",
        rf"point_mass: controller .* -> bar {N}",
    ),
    # Section 7: the recorded references
    Claim(
        "04_gpu_scaling",
        rf"default recipe reached \$-200\$ in {N} s and rejax's SAC \(with the "
        rf"Pendulum configuration from rejax's repository\) in {N} s",
        rf"cold start to -200: sacbook {N} s \(compile [\d.]+ s\), rejax SAC {N} s",
    ),
    Claim(
        "04_gpu_scaling",
        rf"Of sacbook's {N} s, {N} s are compiling; rejax compiles for {N} s",
        rf"sacbook {N} s \(compile {N} s\), rejax SAC [\d.]+ s \(compile {N} s\)",
    ),
    Claim(
        "04_gpu_scaling",
        rf"ships {N} CPU references? and {N} GPU references?",
        rf"references in sacbook/data: \d+ \({N} CPU, {N} GPU or TPU\)",
    ),
    Claim(
        "04_gpu_scaling",
        rf"on the H200, \d+ seeds in one program ran {N} times",
        rf"seeds in one program, speed-up .*?\| +{N}x \(\d+ seeds\)",
    ),
    Claim(
        "04_gpu_scaling",
        rf"the H200 reached \$-200\$ in {N} s against the CPU's [\d.]+ s, because "
        rf"compiling for the GPU took {N} s",
        rf"cold start to -200 \(the GPU suite's run\): {N} s,\s+of which compiling {N} s",
    ),
    Claim(
        "04_gpu_scaling",
        rf"with the same {N} environment steps to solve",
        rf"default: steps to -200 +\| +{N} +\| +{N}",
    ),
    # Section 9: the H200's measurements against the prediction
    Claim(
        "04_gpu_scaling",
        rf"The H200 bears it out, and beats the fast end of the range: {N} ms an "
        rf"iteration, {N} µs an update",
        rf"iterations/s \({N} ms each, {N} µs an update\)",
        "about",
    ),
    Claim(
        "04_gpu_scaling",
        rf"and the default {N} s: the same",
        rf"of which compiling [\d.]+ s and training {N} s",
    ),
    Claim(
        "04_gpu_scaling",
        rf"GPU compiler took {N} s for the default chunk, using {N} s of CPU time",
        rf"XLA {N} s \({N} s of CPU time",
    ),
    Claim(
        "04_gpu_scaling",
        rf"the cold start to \$-200\$ took {N} s, of which {N} s was training",
        rf"GPU suite's run\): {N} s,\s+of which compiling [\d.]+ s and training {N} s",
    ),
    # Section 8: the 1024 pendulums under three policies
    Claim(
        "04_gpu_scaling",
        rf"{N}% are upright after 2 s, mostly starts",
        rf"after 20 iterations: {N}% upright at 2 s",
    ),
    Claim(
        "04_gpu_scaling",
        rf"and {N}% after 5 s\. By iteration",
        rf"after 20 iterations: -?\d+% upright at 2 s, {N}% at 5 s",
    ),
    Claim(
        "04_gpu_scaling",
        rf"By iteration {N}, where the evaluation",
        rf"N = 1,024: compile +[\d.]+ s; solved at iteration {N}",
    ),
    Claim(
        "04_gpu_scaling",
        rf"{N}% of the 1024 are upright after 2 s and {N}% after 5 s",
        rf"after 100 iterations: {N}% upright at 2 s, {N}% at 5 s",
    ),
    Claim(
        "04_gpu_scaling",
        rf"\({N}% here\)",
        rf"after 300 iterations: {N}% upright at 2 s",
    ),
    # Exercise 4.1: the memory of a run with 2^20 environments
    Claim("04_gpu_scaling", rf"take {N} MB, while", rf"replay_buffer: {N} MB"),
    Claim("04_gpu_scaling", rf"environments take {N} MB", rf"environments: {N} MB"),
    Claim("04_gpu_scaling", rf"networks {N} kB", rf"networks: {N} kB"),
    Claim("04_gpu_scaling", rf"working memory, {N} MB", rf"working: {N} MB"),
    # Summary
    Claim(
        "04_gpu_scaling",
        rf"solved {N} of {N} seeds after {N} to {N} iterations",
        rf"solved {N} of {N} seeds, after {N} to {N} iterations",
    ),
    Claim(
        "04_gpu_scaling",
        rf"seed 0 alone reached \$-200\$ after {N} s of training",
        rf"N = 1,024: compile .*?, {N} s training",
        "about",
    ),
    Claim(
        "04_gpu_scaling",
        rf"reached \$-200\$ in {N} s, against {N} s for rejax's SAC",
        rf"cold start to -200: sacbook {N} s \(compile [\d.]+ s\), rejax SAC {N} s",
    ),
)


def _notebook(stem: str) -> dict:
    return json.loads((ROOT / "book" / f"{stem}.ipynb").read_text())


def _markdown(nb: dict) -> str:
    """The prose, with every run of white space as one space (so that a claim
    does not depend on where a line breaks)."""
    text = " ".join(
        "".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown"
    )
    return re.sub(r"\s+", " ", text)


def _outputs(nb: dict) -> str:
    texts = []
    for cell in nb["cells"]:
        for out in cell.get("outputs", []):
            if "text" in out:
                texts.append("".join(out["text"]))
            elif "text/plain" in out.get("data", {}):
                texts.append("".join(out["data"]["text/plain"]))
    return "\n".join(texts)


def _numbers(pattern: str, text: str) -> list[tuple[float, ...]]:
    return [
        tuple(float(g.replace(",", "")) for g in m.groups())
        for m in re.finditer(pattern, text)
    ]


def agrees(relation: str, said: tuple[float, ...], shown: list[tuple]) -> bool:
    """Whether the prose's numbers ``said`` agree with the outputs' ``shown``."""
    values = [v for group in shown for v in group]
    if relation == "equal":
        return all(number in values for number in said)
    if relation == "bounds":
        low, high = said
        return all(low <= v <= high for v in values)
    if relation == "about":
        return all(any(abs(v - n) <= 0.1 * abs(n) for v in values) for n in said)
    if relation == "at_most":
        return all(v <= said[0] for v in values)
    if relation == "at_least":
        return all(v >= said[0] for v in values)
    raise ValueError(
        f"relation: expected equal, bounds, about, at_most or at_least, got {relation!r}"
    )


@pytest.mark.parametrize("claim", CLAIMS, ids=lambda c: f"{c.notebook}:{c.prose[:30]}")
def test_prose_quotes_the_outputs(claim):
    nb = _notebook(claim.notebook)
    said = _numbers(claim.prose, _markdown(nb))
    shown = _numbers(claim.output, _outputs(nb))
    assert said, f"the prose no longer says {claim.prose!r}: update tests/test_prose.py"
    assert shown, f"no output matches {claim.output!r}: update tests/test_prose.py"
    for numbers in said:
        assert agrees(claim.relation, numbers, shown), (
            f"{claim.notebook}: the prose says {numbers} ({claim.prose!r}), "
            f"the outputs show {shown} ({claim.output!r}, {claim.relation})"
        )


def test_agrees_catches_disagreement():
    assert agrees("equal", (64.0,), [(64.0,)])
    assert not agrees("equal", (16.0,), [(64.0,)])
    assert agrees("bounds", (80.0, 120.0), [(90.0,), (119.0,)])
    assert not agrees("bounds", (100.0, 140.0), [(90.0,)])
    assert not agrees("at_most", (1.0,), [(1.98,)])
    assert agrees("at_least", (1.0,), [(1.98,)])
    assert agrees("about", (20.0,), [(20.3,)])
    assert not agrees("about", (20.0,), [(10.2,)])
    with pytest.raises(ValueError, match="relation"):
        agrees("roughly", (1.0,), [(1.0,)])


def test_the_appendix_describes_its_recorded_study():
    """The appendix's reading of the study (data in sacbook/data, not outputs)."""
    data = ROOT / "sacbook" / "data" / "study_cpu-2core_2026-11-24.json"
    rows = json.loads(data.read_text())["rows"]
    prose = _markdown(_notebook("appendix_hyperparameters"))

    def k_tau(row):
        return round(row["updates_per_iteration"] * row["tau"], 6)

    first = sorted({r["batch_size"] for r in rows if r["round"] == 1})
    assert f"tried batches from {first[0]} to {first[-1]}" in prose
    slow_targets = [r for r in rows if r["round"] == 2 and k_tau(r) <= 0.5]
    assert slow_targets
    assert all(None not in r["iterations_to_solve"] for r in slow_targets)
    assert "In round 2 every setting with $K\\tau$ of 0.5 or less solved" in prose
    b64 = [
        i * r["updates_per_iteration"]
        for r in rows
        if r["batch_size"] == 64
        for i in r["iterations_to_solve"]
        if i is not None
    ]
    assert f"batch 64 needs more, {min(b64)} to {max(b64)}" in prose
    fast = [r for r in rows if k_tau(r) == 1.2]
    failed = sum(i is None for r in fast for i in r["iterations_to_solve"])
    seeds = sum(len(r["iterations_to_solve"]) for r in fast)
    assert f"At 1.2, {failed} of {seeds} seeds failed" in prose


# -- exercises ----------------------------------------------------------------

EXERCISE = re.compile(r":::\{admonition\} Exercise (\d+|[A-Z])\.(\d+)")


def _exercise_parts(nb: dict):
    """Each exercise: ``(title, [cells after it up to the next one or the end
    of the exercises])``."""
    parts, current = [], None
    for cell in nb["cells"]:
        text = "".join(cell["source"])
        found = cell["cell_type"] == "markdown" and EXERCISE.search(text)
        if found:
            current = (found.group(0), [])
            parts.append(current)
        elif cell["cell_type"] == "markdown" and text.lstrip().startswith("## "):
            current = None  # the next section (Summary, What's next)
        elif current is not None:
            current[1].append(cell)
    return parts


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_exercise_solutions_hidden_until_asked(path):
    nb = json.loads(path.read_text())
    parts = _exercise_parts(nb)
    assert parts, f"{path.name} has no exercises"
    for title, cells in parts:
        prose = ["".join(c["source"]) for c in cells if c["cell_type"] == "markdown"]
        assert any(":class: dropdown" in p for p in prose), (
            f"{title}: no written solution"
        )
        assert not any("click to show" in p.lower() for p in prose), title
        for cell in cells:
            if cell["cell_type"] != "code" or "exercise-start" in _tags(cell):
                continue
            assert "hide-cell" in _tags(cell), (
                f"{title}: a solution cell without hide-cell"
            )
            jupyter = cell["metadata"].get("jupyter", {})
            assert jupyter.get("source_hidden") and jupyter.get("outputs_hidden"), (
                f"{title}: a solution cell not collapsed in Jupyter"
            )
            assert cell["metadata"].get("cellView") == "form", (
                f"{title}: a solution cell whose code Colab shows"
            )


def _tags(cell) -> list[str]:
    return cell.get("metadata", {}).get("tags", [])
