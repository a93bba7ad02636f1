"""Pictures of pendulums: animations, a parameter explorer, a policy's swing-up.

Training curves are in :mod:`sacbook.plots`.

Animations are ``matplotlib.animation.FuncAnimation`` objects. In a notebook,
show one with :func:`to_html` (``HTML(anim.to_jshtml())``): a self-contained
player that works in Jupyter, Colab and the rendered book. :func:`save_gif`
writes a GIF with Pillow, so no ffmpeg is needed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import matplotlib.pyplot as plt
import numpy as np
from matplotlib import animation

from sacbook import checks, evaluate, pendulum

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
    if thetas.ndim != 2 or min(thetas.shape) < 1:
        raise ValueError(
            f"thetas must have shape (T, N) with T, N >= 1, got {thetas.shape}"
        )
    every = checks.integer("every", every, 1)
    positive = checks.Range(low=0, low_open=True)
    dt = checks.real("dt", dt, positive)
    panel_size = checks.real("panel_size", panel_size, positive)
    dpi = checks.integer("dpi", dpi, 10, 600)
    if interval_ms is not None:
        interval_ms = checks.real("interval_ms", interval_ms, positive)
    if torques is not None:
        torques = np.asarray(torques, dtype=float)
        if torques.ndim == 1:
            torques = torques[:, None]
        if (
            torques.ndim != 2
            or torques.shape[1] != thetas.shape[1]
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

    def clock_text(frame: int) -> str:
        return f"{suptitle + '   ' if suptitle else ''}t = {frame * dt:4.1f} s"

    # laid out with its longest text, so that tight_layout keeps the panels'
    # titles clear of the clock
    clock = fig.suptitle(clock_text(frames[-1]), fontsize=(TITLE_PX + 1) * 72 / dpi)

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
        clock.set_text(clock_text(frame))
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
    fps = checks.integer("fps", fps, 1, 100)
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
    a2.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    a2.set_title("snapshots", fontsize=9)
    return th, thd


def pendulum_explorer(params: pendulum.PendulumParams | None = None):
    """An ipywidgets explorer: sliders for g, l, m, the initial angle and
    velocity, a constant torque, dt and the number of steps. Every change
    re-simulates with :func:`pendulum.step` and redraws :func:`draw_swing`:
    the angle over time, the phase portrait and snapshots of the pendulum.

    It opens on a real swing, released at rest 2 rad from the top. The
    sliders sit in two columns above the plots (one on a phone), so their
    readouts have room.
    Returns the widget (display it as the last expression of a cell).
    """
    import ipywidgets as widgets
    from IPython.display import display

    params = params or pendulum.PendulumParams.point_mass()
    # every slider: redraw on release, labels 100 px wide, 320 px in all
    looks = dict(
        continuous_update=False,
        style={"description_width": "100px"},
        layout=widgets.Layout(width="320px"),
    )

    def slider(description, value, lo, hi, step, kind=widgets.FloatSlider):
        return kind(
            value=value, min=lo, max=hi, step=step, description=description, **looks
        )

    controls = dict(
        g=slider("g [m/s²]", params.g, 0.5, 25.0, 0.1),
        l=slider("l [m]", params.l, 0.2, 3.0, 0.05),
        m=slider("m [kg]", params.m, 0.1, 5.0, 0.1),
        theta0=slider("θ₀ [rad]", 2.0, -math.pi, math.pi, 0.01),
        theta_dot0=slider("θ̇₀ [rad/s]", 0.0, -8.0, 8.0, 0.1),
        torque=slider("torque [N m]", 0.0, -params.max_torque, params.max_torque, 0.05),
        dt=slider("dt [s]", params.dt, 0.005, 0.2, 0.005),
        steps=slider("steps", 200, 10, 1000, 10, kind=widgets.IntSlider),
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
    sliders = widgets.GridBox(  # two columns, or one where two do not fit
        list(controls.values()),
        layout=widgets.Layout(
            grid_template_columns="repeat(auto-fill, minmax(330px, 1fr))"
        ),
    )
    return widgets.VBox([sliders, out])


def save_policy_gif(
    actor_params, config, seed: int, path, num_envs: int = 4, steps: int = 100
) -> None:
    """Write a GIF of the deterministic policy swinging up ``num_envs``
    pendulums for ``steps`` steps (every second frame drawn), from fresh
    starts drawn with ``jax.random.key(seed + 1)``.

    ``config``: the run's :class:`~sacbook.config.TrainConfig` (its ``sac``
    and ``env``); ``actor_params``: ``state.sac.actor_params`` of one run.
    """
    # here, not at the top: the rest of this module needs neither
    thetas, torques, _ = evaluate.policy_rollout(
        actor_params,
        jax.random.key(seed + 1),
        config.sac,
        config.env,
        num_envs,
        steps,
    )
    anim = animate_pendulums(
        np.asarray(thetas),
        dt=config.env.dt,
        torques=np.asarray(torques),
        max_torque=config.env.max_torque,
        every=2,
        suptitle="trained policy",
    )
    save_gif(anim, path)
