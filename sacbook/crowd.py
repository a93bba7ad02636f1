"""Pictures of every pendulum at once, for runs with hundreds or thousands of them.

:mod:`sacbook.viz` animates a few pendulums, one panel each. With 1024 that
would be unreadable, so this module draws them all in two compact ways:

- :func:`plot_angle_image`: each pendulum's angle from upright over time as one
  row of an image, one image per policy (for example at several stages of
  training), and the fraction upright over time below them;
- :func:`animate_grid`: a 32 x 32 grid of small rods, one per pendulum,
  playing each policy in turn.

In both, the pendulums are ordered by how far from upright they started, so
the same row (or grid cell) is the same start in every picture. Both can
colour "upright" alike: :data:`UPRIGHT_CMAP` draws an angle within
:data:`UPRIGHT` of the top in the grid's :data:`UP_COLOUR`, and any other
angle in the grid's grey, lighter the further it is from the top.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib import animation
from matplotlib.collections import LineCollection
from matplotlib.colors import LinearSegmentedColormap

from sacbook import checks

UPRIGHT = 0.5  # rad: a pendulum within this angle of the top counts as upright
UP_COLOUR = np.array([[0.12, 0.35, 0.75, 1.0]])  # RGBA: an upright rod, blue
DOWN_COLOUR = np.array([[0.55, 0.55, 0.55, 1.0]])  # any other rod, grey
# |theta| in [0, pi] (vmin 0, vmax pi) as the grid colours it: the rods' blue
# up to UPRIGHT, then their grey, lightening to near white at hanging
UPRIGHT_CMAP = LinearSegmentedColormap.from_list(
    "sacbook_upright",
    [
        (0.0, UP_COLOUR[0]),
        (UPRIGHT / np.pi, UP_COLOUR[0]),
        (UPRIGHT / np.pi + 1e-3, DOWN_COLOUR[0]),
        (1.0, (0.93, 0.93, 0.93, 1.0)),
    ],
    N=512,
)


def _stages(thetas, labels) -> tuple[list[np.ndarray], list[str]]:
    """Validate a sequence of ``(T, N)`` angle arrays and their labels."""
    if isinstance(thetas, np.ndarray) or not isinstance(thetas, Sequence):
        thetas = [thetas]
    stages = [np.asarray(t, dtype=float) for t in thetas]
    if not stages or any(t.ndim != 2 or min(t.shape) < 1 for t in stages):
        shapes = [t.shape for t in stages]
        raise ValueError(f"thetas must be (T, N) arrays, got shapes {shapes}")
    if len({t.shape for t in stages}) != 1:
        shapes = [t.shape for t in stages]
        raise ValueError(f"every stage of thetas must have one shape, got {shapes}")
    labels = list(labels) if labels is not None else [""] * len(stages)
    if len(labels) != len(stages):
        raise ValueError(
            f"labels must have one entry per stage ({len(stages)}), got {len(labels)}"
        )
    return stages, [str(label) for label in labels]


def angle_from_upright(thetas) -> np.ndarray:
    """``|theta|`` wrapped to ``[0, pi]``: 0 upright, pi hanging."""
    return np.abs((np.asarray(thetas) + np.pi) % (2 * np.pi) - np.pi)


def start_order(thetas) -> np.ndarray:
    """Indices that sort the pendulums of ``(T, N)`` ``thetas`` by how far from
    upright they start: nearly upright first, hanging last. Shape ``(N,)``."""
    return np.argsort(angle_from_upright(np.asarray(thetas)[0]), kind="stable")


def upright_fraction(thetas, within: float = UPRIGHT) -> np.ndarray:
    """The fraction of pendulums within ``within`` rad of upright at each time
    step of ``(T, N)`` ``thetas``. Shape ``(T,)``."""
    return np.mean(angle_from_upright(thetas) < within, axis=-1)


def plot_angle_image(
    thetas,
    labels: Sequence[str] | None = None,
    *,
    dt: float = 0.05,
    width: float = 7.0,
    dpi: int = 100,
    height: float | None = None,
    cmap="cividis_r",
    fontsize: float = 9.0,
):
    """Every pendulum's angle from upright over time, one image per stage.

    Args:
      thetas: a ``(T, N)`` array of angles, or a sequence of them (one per
        stage, each from the same N starts).
      labels: one title per stage, for example "after 20 iterations".
      dt: simulated seconds per time step.
      width: figure width in inches (7 fits the book's column at 100 dpi).
      height: figure height in inches (default ``0.42 * width + 0.6``).
      cmap: the colours of ``|theta|`` from 0 (up) to pi (down); the default
        is bright where upright. :data:`UPRIGHT_CMAP` uses the colours of
        :func:`animate_grid`.
      fontsize: labels in points; titles one point larger, ticks one smaller.
        A narrow figure with larger text stays legible on a phone.
    Returns the figure: the images on top (row = pendulum, sorted by start,
    column = time), the fraction upright over time below, one line style and
    marker per stage.
    """
    stages, labels = _stages(thetas, labels)
    num_steps, num = stages[0].shape
    order = start_order(stages[0])
    height = 0.42 * width + 0.6 if height is None else height
    fig = plt.figure(figsize=(width, height), dpi=dpi, layout="constrained")
    grid = fig.add_gridspec(2, len(stages), height_ratios=(2.2, 1))
    image_axes = []
    seconds = num_steps * dt
    for k, (stage, label) in enumerate(zip(stages, labels)):
        ax = fig.add_subplot(grid[0, k])
        image_axes.append(ax)
        image = ax.imshow(
            angle_from_upright(stage[:, order]).T,
            aspect="auto",
            cmap=cmap,
            vmin=0.0,
            vmax=np.pi,
            extent=(0.0, seconds, num, 0),
            interpolation="nearest",
        )
        ax.set_title(label, fontsize=fontsize + 1)
        ax.set_xlabel("time [s]", fontsize=fontsize)
        ax.tick_params(labelsize=fontsize - 1)
        if k == 0:
            ax.set_ylabel(f"pendulum (of {num:,}),\nsorted by start", fontsize=fontsize)
        else:
            ax.set_yticklabels([])
    bar = fig.colorbar(image, ax=image_axes, fraction=0.05, pad=0.02)
    bar.set_ticks(
        [0, UPRIGHT, np.pi / 2, np.pi], labels=["0 up", f"{UPRIGHT}", "π/2", "π down"]
    )
    bar.ax.tick_params(labelsize=fontsize - 1)
    bar.set_label("|θ| [rad]", fontsize=fontsize)
    ax = fig.add_subplot(grid[1, :])
    time = np.arange(num_steps) * dt
    styles = ["-", "--", ":", "-."]
    markers = ["o", "s", "^", "D"]
    for k, (stage, label) in enumerate(zip(stages, labels)):
        ax.plot(
            time,
            upright_fraction(stage),
            color="0.15",
            ls=styles[k % len(styles)],
            marker=markers[k % len(markers)],
            markevery=max(1, num_steps // 8),
            ms=4,
            lw=1.5,
            label=" ".join(label.split()),  # one line in the legend
        )
    ax.set(ylim=(-0.03, 1.03), xlim=(0, seconds))
    ax.set_xlabel("time [s]", fontsize=fontsize)
    ax.set_ylabel(f"upright\n(|θ| < {UPRIGHT})", fontsize=fontsize)
    ax.tick_params(labelsize=fontsize - 1)
    ax.legend(fontsize=fontsize - 1, loc="center right")
    return fig


def animate_grid(
    thetas,
    labels: Sequence[str] | None = None,
    *,
    dt: float = 0.05,
    every: int = 5,
    size: float = 6.0,
    dpi: int = 64,
):
    """Animate every pendulum as a small rod in a square grid, stage after stage.

    Args:
      thetas: a ``(T, N)`` array of angles, or a sequence of them (one per
        stage, each from the same N starts); N up to a few thousand.
      labels: one title per stage.
      dt: simulated seconds per time step; every: keep every ``every``-th step.
      size: figure width in inches; dpi: its resolution. The defaults draw
        1024 pendulums as 32 x 32 rods in 384 px, about 16 kB a frame.
    Returns a ``FuncAnimation`` (show it with :func:`sacbook.viz.to_html`).
    Rods within :data:`UPRIGHT` of the top are drawn blue and thicker; the
    title counts them, so colour is not the only cue.
    """
    stages, labels = _stages(thetas, labels)
    every = checks.integer("every", every, 1)
    num_steps, num = stages[0].shape
    side = math.ceil(math.sqrt(num))
    order = start_order(stages[0])
    column, row = np.arange(num) % side, np.arange(num) // side
    centre_x, centre_y = column + 0.5, side - row - 0.5
    fig, ax = plt.subplots(figsize=(size, size + 0.45), dpi=dpi)
    ax.set(xlim=(0, side), ylim=(0, side), aspect="equal")
    ax.axis("off")
    # antialiasing off: sharp rods compress to a fifth of the size in PNG frames
    rods = LineCollection([], antialiaseds=False, capstyle="round")
    ax.add_collection(rods)
    title = ax.set_title("", fontsize=13 * 72 / dpi)  # 13 px whatever the dpi
    frames = [(k, t) for k in range(len(stages)) for t in range(0, num_steps, every)]

    def draw(frame):
        k, t = frame
        theta = stages[k][t, order]
        tip_x = centre_x + 0.42 * np.sin(theta)
        tip_y = centre_y + 0.42 * np.cos(theta)
        pivots, tips = np.stack([centre_x, centre_y], -1), np.stack([tip_x, tip_y], -1)
        rods.set_segments(np.stack([pivots, tips], 1))  # (N, 2 ends, 2 coordinates)
        up = angle_from_upright(theta) < UPRIGHT
        rods.set_color(np.where(up[:, None], UP_COLOUR, DOWN_COLOUR))
        rods.set_linewidth(np.where(up, 2.2, 1.4))
        title.set_text(
            f"{labels[k]}   t = {t * dt:3.1f} s   upright: {np.mean(up):4.0%}".strip()
        )
        return [rods, title]

    fig.tight_layout(pad=0.3)
    anim = animation.FuncAnimation(
        fig, draw, frames=frames, interval=1000 * dt * every, blit=False
    )
    plt.close(fig)  # the animation owns the figure; do not also show a still
    return anim
