"""Training plots: curves that grow while a run trains, the curves of many
runs with their interquartile mean and its confidence band, and a run's
learning curve written to a file (``sacbook train``).

Animations and widgets of pendulums are in :mod:`sacbook.viz`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np

from sacbook import stats
from sacbook.evaluate import SOLVED_RETURN


class LivePlot:
    """Training curves that redraw in place in a notebook while training runs.

    ``LivePlot(["critic_loss", "episode_return"])`` then ``plot.update(history)``
    after each chunk, where ``history`` is a list of metric dicts with an
    ``env_steps`` key. Outside a notebook it only keeps the last figure.
    """

    def __init__(
        self,
        keys: Sequence[str],
        *,
        x_key: str = "env_steps",
        ncols: int = 3,
        reference: dict[str, tuple[float, str]] | None = None,
        dpi: int = 70,
    ):
        self.keys = list(keys)
        self.x_key = x_key
        self.reference = reference or {}
        rows = math.ceil(len(self.keys) / ncols)
        # at most 9.4 inches wide, so that the text stays readable (about 9 px
        # and up) when the book scales the figure to its column
        width = min(3.2 * ncols, 9.4)
        self.fig, axes = plt.subplots(
            rows, ncols, figsize=(width, 2.5 * rows), dpi=dpi, squeeze=False
        )
        self.axes = list(axes.flat)
        for ax in self.axes[len(self.keys) :]:
            ax.axis("off")
        self._handle = None
        plt.close(self.fig)

    def update(self, history: Sequence[dict]):
        from IPython.display import display

        x = np.array([h[self.x_key] for h in history], dtype=float)
        for ax, key in zip(self.axes, self.keys):
            ax.clear()
            y = np.array([h.get(key, np.nan) for h in history], dtype=float)
            ok = np.isfinite(y)
            ax.plot(x[ok], y[ok], lw=1.5)
            if key in self.reference:
                value, label = self.reference[key]
                ax.axhline(value, color="k", ls="--", lw=1, label=label)
                ax.legend(fontsize=7)
            ax.set_title(key, fontsize=10)
            ax.set_xlabel(self.x_key, fontsize=9)
            ax.tick_params(labelsize=8.5)
        if self._handle is None:
            self.fig.tight_layout()  # once: layout is the slow part of a redraw
            self._handle = display(self.fig, display_id=True)
        else:
            self._handle.update(self.fig)
        return self.fig


def plot_runs(
    histories,
    ax=None,
    *,
    key: str = "eval_return",
    label: str | None = None,
    color=None,
    marker: str = "o",
    linestyle: str = "-",
    target: float | None = SOLVED_RETURN,
    runs: bool = True,
    confidence: float = 0.95,
):
    """Learning curves of several runs (seeds): each run thin, their
    interquartile mean bold, and its bootstrap confidence band shaded
    (:func:`sacbook.stats.band`).

    Args:
      histories: one history per run (``TrainResult.history``, lists of
        records with ``env_steps`` and ``key``).
      ax: the axes to draw on (default: a new figure's).
      label: legend label of the IQM line (default: "IQM of R runs").
      color, marker, linestyle: of the IQM line; the markers and line style
        tell curves apart without colour.
      target: a dashed line at the solved return (None: none).
      runs: draw each run's curve too.
    Returns the axes.
    """
    steps, values = stats.from_histories(histories, key)
    if ax is None:
        ax = plt.subplots(figsize=(6, 3.5), dpi=100)[1]
    point, low, high = stats.band(values, confidence=confidence)
    (line,) = ax.plot(
        steps,
        point,
        color=color,
        marker=marker,
        ms=3,
        ls=linestyle,
        lw=2,
        label=label or f"IQM of {len(values)} runs",
    )
    ax.fill_between(steps, low, high, color=line.get_color(), alpha=0.25, lw=0)
    if runs:
        for curve in values:
            ax.plot(steps, curve, color=line.get_color(), lw=0.6, alpha=0.35)
    if target is not None:
        ax.axhline(target, color="k", ls="--", lw=1)
    ax.set_xlabel("environment steps")
    ax.set_ylabel("evaluation return" if key == "eval_return" else key)
    return ax


def save_learning_curve(history: Sequence[dict], path) -> None:
    """Draw one run's learning curve to the image file ``path`` (600 x 350
    px): the mean return of the training episodes that ended in each chunk
    (squares: with many envs all episodes end together, so few chunks have
    one), the deterministic evaluation (circles), and a dashed line at the
    solved return :data:`~sacbook.evaluate.SOLVED_RETURN`.

    ``history``: the run's records (``TrainResult.history``), each with
    ``env_steps`` and ``episode_return``, and ``eval_return`` where evaluated.
    """
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    steps = [h["env_steps"] for h in history]
    returns = [h["episode_return"] for h in history]
    ax.plot(steps, returns, "s-", ms=4, label="training episodes", alpha=0.6)
    evals = [(h["env_steps"], h["eval_return"]) for h in history if "eval_return" in h]
    if evals:
        ax.plot(*zip(*evals), "o-", ms=3, label="deterministic evaluation")
    ax.axhline(
        SOLVED_RETURN, color="k", ls="--", lw=1, label=f"solved ({SOLVED_RETURN:.0f})"
    )
    ax.set_xlabel("environment steps")
    ax.set_ylabel("episode return")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
