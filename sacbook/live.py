"""Live views: the pendulum and the trained policies, running in the reader's browser.

Each function returns an :class:`IPython.display.HTML` that holds everything it
needs: the view's settings, any policy (a ``sacbook-policy`` file, see
:mod:`sacbook.export`) and the JavaScript module ``sacbook/static/sacbook_live.js``
itself, inlined. So the same cell output runs in Jupyter, on Colab and on the
book's static web page, with no kernel, no server and nothing fetched from the
network. The module steps the physics of :mod:`sacbook.pendulum` in float64 and
runs the actor forward; ``tests/test_live.py`` checks both against the package.

The policies the book shows are committed in ``sacbook/static/policies/``;
``scripts/make_policies.py`` makes them again from the chapters' runs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import html
import itertools
import json
from importlib import resources
from pathlib import Path

from IPython.display import HTML

from sacbook import checks, export
from sacbook.pendulum import PendulumParams

STATIC = resources.files("sacbook") / "static"
POLICY_SLIDERS = ("g", "l", "m", "max_torque", "dt")
EXPLORER_SLIDERS = ("g", "l", "m", "theta0", "theta_dot0", "torque", "max_torque", "dt")
_ids = itertools.count(1)  # ids unique on a page, the same on every run from the top


def module_text() -> str:
    """The JavaScript module's source (about 30 kB)."""
    return STATIC.joinpath("sacbook_live.js").read_text(encoding="utf-8")


def policy_names() -> list[str]:
    """The committed policies, by name: ``chapter3``, ``chapter4_iteration20``..."""
    folder = STATIC.joinpath("policies")
    return sorted(
        p.name[: -len(".json")] for p in folder.iterdir() if p.name.endswith(".json")
    )


def load_policy(policy) -> dict:
    """A ``sacbook-policy`` dict from a committed policy's name, a path or a dict."""
    if isinstance(policy, dict):
        data = policy
    elif isinstance(policy, str) and policy in policy_names():
        data = json.loads(STATIC.joinpath("policies", f"{policy}.json").read_text())
    elif isinstance(policy, (str, Path)) and Path(policy).is_file():
        data = json.loads(Path(policy).read_text())
    else:
        raise ValueError(
            f"policy must be one of {policy_names()}, a policy file or a dict, "
            f"got {policy!r}"
        )
    export.read_policy(data)  # the whole file checked: one line if it is not a policy
    return data


def view_html(config: dict, label: str) -> str:
    """The HTML of one view: a ``<div>`` holding ``config`` as JSON, then a
    module script with the module inlined that mounts it. ``label`` names the
    view for screen readers."""
    text = json.dumps(config, separators=(",", ":"), allow_nan=False)
    digest = hashlib.sha1(text.encode()).hexdigest()[:8]
    element_id = f"sacbook-live-{digest}-{next(_ids)}"
    # "</" would end the <script> early; JSON allows the escape "<\/"
    data = text.replace("</", "<\\/")
    return (
        f'<div class="sacbook-live" id="{element_id}" role="group" '
        f'aria-label="{html.escape(label)}">'
        f'<script type="application/json">{data}</script>'
        '<p class="sl-static">This live view needs JavaScript.</p></div>\n'
        f'<script type="module">\n{module_text()}\n'
        f'mount(document.getElementById("{element_id}"));\n</script>'
    )


def _physics(params: PendulumParams) -> dict:
    if not isinstance(params, PendulumParams):
        raise ValueError(f"params must be a PendulumParams, got {params!r}")
    return dataclasses.asdict(params)


def explorer(
    params: PendulumParams | None = None,
    theta: float = 2.0,
    theta_dot: float = 0.0,
    torque: float = 0.0,
) -> HTML:
    """Chapter 1's explorer, live: one pendulum under a constant torque, its
    unwrapped angle over the last 10 s, sliders for g, l, m, the start angle
    and speed, the torque, its limit and dt. Opens released from ``theta``."""
    params = PendulumParams.point_mass() if params is None else params
    physics = _physics(params)
    config = {
        "view": "explorer",
        "preset": "point_mass" if params.body == "point_mass" else "gymnasium",
        "physics": physics,
        "theta": checks.real("theta", theta),
        "theta_dot": checks.real("theta_dot", theta_dot),
        "torque": checks.real("torque", torque),
        "plot": True,
        "sliders": list(EXPLORER_SLIDERS),
    }
    return HTML(view_html(config, "Live pendulum explorer"))


def policy(name="chapter3", theta: float = 3.0) -> HTML:
    """A trained policy balancing one pendulum, live: push it (drag the bob, the
    arrow keys or the buttons), change its physics, switch the policy off.
    ``name``: a committed policy's name, a policy file or a policy dict."""
    config = {
        "view": "policy",
        "policy": load_policy(name),
        "theta": checks.real("theta", theta),
        "sliders": list(POLICY_SLIDERS),
    }
    return HTML(view_html(config, "Live trained policy"))


def squashed_gaussian(mean: float = 0.0, log_std: float = 0.0) -> HTML:
    """Chapter 2's squashed Gaussian, live: the density of ``tanh(u)`` for
    ``u ~ N(mean, exp(log_std))``, with and without the log-det correction."""
    config = {
        "view": "squashed",
        "mean": checks.real("mean", mean),
        "log_std": checks.real("log_std", log_std),
    }
    return HTML(view_html(config, "Live squashed Gaussian"))


def grid(names, labels, count: int = 1024, seed: int = 7) -> HTML:
    """``count`` pendulums per policy, each policy's in a square grid, all live,
    with the number upright under each. ``names``: policies (as :func:`policy`
    takes them); ``labels``: a caption for each."""
    policies = [load_policy(n) for n in names]
    if not policies or len(labels) != len(policies):
        raise ValueError(
            f"labels must give one caption per policy ({len(policies)}), "
            f"got {len(labels)}"
        )
    config = {
        "view": "grid",
        "policies": policies,
        "labels": [str(label) for label in labels],
        "count": checks.integer("count", count, 1),
        "seed": checks.integer("seed", seed, 0),
    }
    return HTML(view_html(config, f"Live grid of {count} pendulums per policy"))
