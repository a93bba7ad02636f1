"""Pictures: pendulum animations, a parameter explorer, live training plots.

Animations are ``matplotlib.animation.FuncAnimation`` objects. In a notebook,
show one with :func:`to_html` (``HTML(anim.to_jshtml())``): a self-contained
player that works in Jupyter, Colab and the rendered book. :func:`save_gif`
writes a GIF with Pillow, so no ffmpeg is needed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib import animation

from sacbook import checks, pendulum
from sacbook.evaluate import SOLVED_RETURN

# Titles of animation panels, in pixels of the frame whatever its dpi: 12 px
# text stays readable when the book shows the frame at its natural size.
TITLE_PX = 12


def _grid(n: int) -> tuple[int, int]:
    cols = n if n <= 4 else math.ceil(math.sqrt(n * 1.5))
    return math.ceil(n / cols), cols


def pendulum_xy(theta, length: float = 1.0):
    """Tip position for angle(s) ``theta`` measured from upright: ``(x, y)``."""
    theta = np.asarray(theta)
    return length * np.sin(theta), length * np.cos(theta)


def animate_pendulums(
    thetas,
    *,
    dt: float = 0.05,
    torques=None,
    max_torque: float = 2.0,
    titles: Sequence[str] | None = None,
    every: int = 1,
    cols: int | None = None,
    panel_size: float = 1.6,
    dpi: int = 60,
    interval_ms: float | None = None,
    suptitle: str | None = None,
) -> animation.FuncAnimation:
    """Animate N pendulums side by side.

    Args:
      thetas: ``(T, N)`` (or ``(T,)``) angles from upright, one row per time step.
      dt: simulated seconds per row, for the clock and the default frame rate.
      torques: optional ``(T, N)`` torques, drawn as a coloured arc at the pivot.
      max_torque: torque that fills the arc.
      titles: optional N panel titles.
      cols: panels per row (default: a near-square grid; up to 4 in one row).
      every: keep every ``every``-th row, to keep the animation small.
      panel_size: inches per panel; dpi: resolution. Small values keep notebooks
        small. Titles are :data:`TITLE_PX` pixels whatever the dpi, so a panel
        needs about 6.5 px (``6.5 / dpi`` inches) per title character.
      interval_ms: delay between frames; default real time (``dt * every``).
    Returns:
      A ``FuncAnimation``; show it with :func:`to_html` or save it with
      :func:`save_gif`.
    """
    thetas = np.asarray(thetas, dtype=float)
    if thetas.ndim == 1:
        thetas = thetas[:, None]
    if thetas.ndim != 2 or thetas.shape[0] < 1:
        raise ValueError(
            f"thetas must have shape (T, N) with T >= 1, got {thetas.shape}"
        )
    every = checks.integer("every", every, 1)
    if torques is not None:
        torques = np.asarray(torques, dtype=float)
        if torques.ndim == 1:
            torques = torques[:, None]
        if (
            torques.shape[1] != thetas.shape[1]
            or torques.shape[0] < thetas.shape[0] - 1
        ):
            raise ValueError(
                f"torques must have shape (T, N) like thetas {thetas.shape}, "
                f"got {torques.shape}"
            )
    num_steps, num = thetas.shape
    if titles is not None and len(titles) != num:
        raise ValueError(
            f"titles must have one entry per pendulum ({num}), got {len(titles)}"
        )
    if cols is not None:
        cols = checks.integer("cols", cols, 1)
    frames = list(range(0, num_steps, every))
    rows, cols = (
        _grid(num) if cols is None else (math.ceil(num / cols), min(int(cols), num))
    )
    fig, axes = plt.subplots(
        rows,
        cols,
        figsize=(panel_size * cols, panel_size * rows + 0.3),
        dpi=dpi,
        squeeze=False,
    )
    rods, tips, arcs = [], [], []
    for i, ax in enumerate(axes.flat):
        ax.set_xlim(-1.25, 1.25)
        ax.set_ylim(-1.25, 1.25)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
        if i >= num:
            ax.axis("off")
            continue
        ax.plot(
            [0, 0], [0, 1.15], color="0.85", lw=1, ls="--", zorder=0
        )  # the upright target
        (rod,) = ax.plot([], [], color="tab:blue", lw=3, solid_capstyle="round")
        (tip,) = ax.plot([], [], "o", color="tab:red", ms=6)
        (arc,) = ax.plot([], [], color="tab:orange", lw=2)
        ax.plot([0], [0], "ko", ms=3)
        if titles is not None:
            ax.set_title(str(titles[i]), fontsize=TITLE_PX * 72 / dpi)
        rods.append(rod)
        tips.append(tip)
        arcs.append(arc)
    clock = fig.suptitle(suptitle or "", fontsize=(TITLE_PX + 1) * 72 / dpi)

    def draw(frame):
        x, y = pendulum_xy(thetas[frame])
        for i in range(num):
            rods[i].set_data([0, x[i]], [0, y[i]])
            tips[i].set_data([x[i]], [y[i]])
            if torques is not None and frame < torques.shape[0]:
                # arc at the pivot, length proportional to the torque, sign = direction
                span = np.clip(torques[frame, i] / max(max_torque, 1e-9), -1, 1) * np.pi
                angles = thetas[frame, i] + np.linspace(0, span, 12)
                arcs[i].set_data(*pendulum_xy(angles, 0.3))
        clock.set_text(f"{suptitle + '   ' if suptitle else ''}t = {frame * dt:4.1f} s")
        return rods + tips + arcs + [clock]

    fig.tight_layout()
    anim = animation.FuncAnimation(
        fig,
        draw,
        frames=frames,
        interval=interval_ms if interval_ms is not None else 1000 * dt * every,
        blit=False,
    )
    plt.close(fig)  # the animation owns the figure; do not also show a still
    return anim


def to_html(anim: animation.FuncAnimation, alt: str | None = None):
    """Inline, self-contained player for Jupyter, Colab and the rendered book.

    ``alt`` says in words what the animation shows; it becomes the alt text of
    the player's frame, for readers who cannot see it.
    """
    import html

    from IPython.display import HTML

    player = anim.to_jshtml(default_mode="loop")
    if alt is not None:
        if not isinstance(alt, str) or not alt.strip():
            raise ValueError(f"alt must be a non-empty string, got {alt!r}")
        frame = '<img id="_anim_img'
        if frame not in player:  # matplotlib changed its player
            raise RuntimeError("cannot find the animation's frame to give it alt text")
        alt_attribute = (
            f'<img alt="{html.escape(alt.strip(), quote=True)}" id="_anim_img'
        )
        player = player.replace(frame, alt_attribute, 1)
    return HTML(player)


def save_gif(anim: animation.FuncAnimation, path, fps: int | None = None) -> None:
    """Write the animation as a GIF with Pillow (no ffmpeg needed)."""
    if fps is None:
        fps = max(1, round(1000 / anim._interval))
    anim.save(str(path), writer=animation.PillowWriter(fps=fps))


def simulate(
    theta0,
    theta_dot0,
    torque,
    steps: int,
    params: pendulum.PendulumParams,
    integrator: str = "semi_implicit",
):
    """Simulate under a constant torque, with no resets. Returns numpy
    ``(thetas, theta_dots)`` of shape ``(steps + 1, ...)``.

    ``integrator`` is ``"semi_implicit"`` (the package's :func:`pendulum.step`)
    or ``"explicit"`` (:func:`pendulum.explicit_euler_step`, for comparison).
    """
    if integrator not in ("semi_implicit", "explicit"):
        raise ValueError(
            f"integrator must be 'semi_implicit' or 'explicit', got {integrator!r}"
        )
    steps = checks.integer("steps", steps, 1)
    step_fn = (
        pendulum.step if integrator == "semi_implicit" else pendulum.explicit_euler_step
    )
    theta0 = np.asarray(theta0, np.float32)
    torques = np.broadcast_to(np.asarray(torque, np.float32), (steps,) + theta0.shape)
    thetas, theta_dots = pendulum.rollout(theta0, theta_dot0, torques, params, step_fn)
    return np.asarray(thetas), np.asarray(theta_dots)


def draw_swing(
    axes,
    params: pendulum.PendulumParams,
    theta0: float,
    theta_dot0: float = 0.0,
    torque: float = 0.0,
    steps: int = 200,
):
    """Simulate one pendulum under a constant torque and draw it on three axes:
    the angle over time (unwrapped, so going over the top reads as a climb of
    2 pi, not a jump), the phase portrait, and six snapshots of the rod.

    ``axes`` is a sequence of three matplotlib axes. Returns ``(thetas,
    theta_dots)``, numpy arrays of shape ``(steps + 1,)``.
    """
    th, thd = simulate(theta0, theta_dot0, torque, steps, params)
    t = np.arange(steps + 1) * params.dt
    a0, a1, a2 = axes
    unwrapped = np.unwrap(th)
    a0.plot(t, unwrapped, lw=1.2)
    # upright (even multiples of pi) and hanging (odd) levels, labelled in pi
    lo = math.floor(min(unwrapped.min(), -0.5) / np.pi)
    hi = math.ceil(max(unwrapped.max(), 0.5) / np.pi)
    levels = np.arange(lo, hi + 1)
    for k in levels:
        a0.axhline(k * np.pi, color="0.6" if k % 2 == 0 else "0.85", lw=0.8, zorder=0)
    step = math.ceil(len(levels) / 6)
    step += step % 2 if step > 1 else 0  # 1, 2, 4, 6, ...: keep 0 and upright ticks
    ticks = levels[levels % step == 0]
    names = {0: "0", 1: "π", -1: "−π"}
    a0.set_yticks(
        ticks * np.pi, [names.get(k, f"{k}π".replace("-", "−")) for k in ticks]
    )
    a0.set_ylim(lo * np.pi - 0.3, hi * np.pi + 0.3)
    a0.set_xlabel("time [s]")
    a0.set_ylabel("θ, unwrapped (0 = up)")
    a1.plot(th, thd, ".", ms=1.5)
    a1.set_xlim(-np.pi, np.pi)
    a1.set_xlabel("θ [rad]")
    a1.set_ylabel(r"$\dot\theta$ [rad/s]")
    a1.set_title("phase portrait", fontsize=9)
    styles = ["-", "--", "-.", ":", "-", "--"]
    for k, idx in enumerate(np.linspace(0, steps, 6).astype(int)):
        x, y = pendulum_xy(th[idx], 1.0)
        a2.plot(
            [0, x],
            [0, y],
            color=plt.cm.viridis(k / 5),
            ls=styles[k],
            lw=2,
            label=f"t={idx * params.dt:.1f}s",
        )
    a2.set_xlim(-1.2, 1.2)
    a2.set_ylim(-1.2, 1.2)
    a2.set_aspect("equal")
    a2.set_xticks([])
    a2.set_yticks([])
    a2.legend(fontsize=6, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    a2.set_title("snapshots", fontsize=9)
    return th, thd


def pendulum_explorer(params: pendulum.PendulumParams | None = None):
    """An ipywidgets explorer: sliders for g, l, m, the initial angle and
    velocity, a constant torque, dt and the number of steps. Every change
    re-simulates with :func:`pendulum.step` and redraws :func:`draw_swing`:
    the angle over time, the phase portrait and snapshots of the pendulum.

    It opens on a real swing, released at rest 2 rad from the top. The
    sliders sit in two columns above the plots, so their readouts have room.
    Returns the widget (display it as the last expression of a cell).
    """
    import ipywidgets as widgets
    from IPython.display import display

    params = params or pendulum.PendulumParams.point_mass()
    style = {"description_width": "100px"}
    layout = widgets.Layout(width="320px")

    def slider(description, value, lo, hi, step):
        return widgets.FloatSlider(
            value=value,
            min=lo,
            max=hi,
            step=step,
            description=description,
            continuous_update=False,
            style=style,
            layout=layout,
        )

    controls = dict(
        g=slider("g [m/s²]", params.g, 0.5, 25.0, 0.1),
        l=slider("l [m]", params.l, 0.2, 3.0, 0.05),
        m=slider("m [kg]", params.m, 0.1, 5.0, 0.1),
        theta0=slider("θ₀ [rad]", 2.0, -math.pi, math.pi, 0.01),
        theta_dot0=slider("θ̇₀ [rad/s]", 0.0, -8.0, 8.0, 0.1),
        torque=slider("torque [N m]", 0.0, -params.max_torque, params.max_torque, 0.05),
        dt=slider("dt [s]", params.dt, 0.005, 0.2, 0.005),
        steps=widgets.IntSlider(
            value=200,
            min=10,
            max=1000,
            step=10,
            description="steps",
            continuous_update=False,
            style=style,
            layout=layout,
        ),
    )
    out = widgets.Output()

    def redraw(g, l, m, theta0, theta_dot0, torque, dt, steps):
        p = pendulum.PendulumParams(
            g=g,
            l=l,
            m=m,
            dt=dt,
            max_torque=params.max_torque,
            max_speed=params.max_speed,
            episode_length=params.episode_length,
            body=params.body,
        )
        fig, axes = plt.subplots(1, 3, figsize=(9.4, 2.9), dpi=70)
        draw_swing(axes, p, theta0, theta_dot0, torque, steps)
        fig.tight_layout()
        with out:
            out.clear_output(wait=True)
            display(fig)
        plt.close(fig)

    def on_change(_=None):
        redraw(**{k: w.value for k, w in controls.items()})

    for w in controls.values():
        w.observe(on_change, names="value")
    on_change()
    sliders = widgets.GridBox(
        list(controls.values()),
        layout=widgets.Layout(grid_template_columns="repeat(2, 330px)"),
    )
    return widgets.VBox([sliders, out])


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
    from sacbook import stats

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
