"""Tests for sacbook.viz: animations, HTML player, GIF export, the simulate
helper, the parameter explorer widget, and sacbook.plots' live training plot."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")  # headless, before pyplot is imported anywhere

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib import animation  # noqa: E402

from sacbook import pendulum, plots, viz  # noqa: E402

# animations built only to count frames are never rendered; that is intended here
pytestmark = pytest.mark.filterwarnings(
    "ignore:Animation was deleted without rendering:UserWarning"
)

TINY = dict(dpi=20, panel_size=0.8)  # keep animations cheap


def _thetas(T, N):
    return np.linspace(0.0, 3.0, T)[:, None] + np.arange(N)[None, :]


def _num_frames(anim):
    return len(list(anim.new_frame_seq()))


@pytest.mark.parametrize(
    "T, N, every", [(5, 2, 2), (6, 3, 2), (1, 1, 1), (7, 5, 3), (4, 2, 10)]
)
def test_animate_pendulums_frame_count(T, N, every):
    """A (T, N) array gives a FuncAnimation with ceil(T / every) frames."""
    anim = viz.animate_pendulums(_thetas(T, N), every=every, **TINY)
    assert isinstance(anim, animation.FuncAnimation)
    assert _num_frames(anim) == math.ceil(T / every)


def test_animate_pendulums_accepts_1d_torques_and_titles():
    """A (T,) angle array is one pendulum; torques (T-1 rows, as from rollout)
    and titles are accepted and the frames draw without error."""
    anim = viz.animate_pendulums(
        np.linspace(0, 1, 4), torques=np.ones(3), titles=["a"], every=1, **TINY
    )
    assert _num_frames(anim) == 4
    anim2 = viz.animate_pendulums(
        _thetas(3, 2), torques=np.ones((3, 2)), titles=["a", "b"], suptitle="s", **TINY
    )
    for frame in anim2.new_frame_seq():  # the draw callback runs for every frame
        anim2._func(frame)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(thetas=np.zeros((3, 2, 2))),
        dict(thetas=np.zeros((0, 2))),
        dict(thetas=np.zeros((3, 2)), every=0),
        dict(thetas=np.zeros((3, 2)), every=-1),
        dict(thetas=np.zeros((3, 2)), every=1.5),
        dict(thetas=np.zeros((3, 2)), torques=np.zeros((3, 3))),
        dict(thetas=np.zeros((5, 2)), torques=np.zeros((2, 2))),
        dict(thetas=np.zeros((5, 0))),
        dict(thetas=np.zeros((5, 2)), torques=np.zeros((5, 2, 2))),
        dict(thetas=np.zeros((5, 2)), dt=0.0),
        dict(thetas=np.zeros((5, 2)), dt=math.nan),
        dict(thetas=np.zeros((5, 2)), interval_ms=0),
        dict(thetas=np.zeros((5, 2)), panel_size=0),
    ],
    ids=[
        *("ndim3", "T0", "every0", "every-1", "every-float", "torques-N"),
        *("torques-T", "N0", "torques-3d", "dt0", "dt-nan", "interval0", "panel0"),
    ],
)
def test_animate_pendulums_bad_input(kwargs):
    """Bad shapes, a bad `every`, a time step or size that is not > 0: one
    ValueError each, naming what is wrong (not ZeroDivisionError in
    matplotlib)."""
    with pytest.raises(ValueError):
        viz.animate_pendulums(**{**TINY, **kwargs})


@pytest.mark.parametrize("dpi", [0, 10**6, 60.5])
def test_animate_pendulums_refuses_a_dpi_out_of_range(dpi):
    with pytest.raises(ValueError, match=r"dpi must be an integer in \[10, 600\]"):
        viz.animate_pendulums(np.zeros((5, 2)), dpi=dpi)


def test_save_gif_refuses_a_frame_rate_out_of_range(tmp_path):
    anim = viz.animate_pendulums(_thetas(3, 1), **TINY)
    for fps in (0, -3, 1000):
        with pytest.raises(ValueError, match=r"fps must be an integer in \[1, 100\]"):
            viz.save_gif(anim, tmp_path / "a.gif", fps=fps)


def test_to_html_is_a_jshtml_player():
    """to_html gives an IPython HTML object with the self-contained JavaScript
    player holding every frame."""
    anim = viz.animate_pendulums(_thetas(5, 2), every=2, **TINY)
    html = viz.to_html(anim)
    data = html.data
    assert "<script" in data and "anim" in data
    assert "new Animation(" in data
    assert "new Array(3)" in data  # ceil(5 / 2) frames
    assert data.count("data:image/png;base64") == 3


def test_to_html_gives_the_frame_alt_text():
    """alt becomes the escaped alt attribute of the player's one frame image;
    an empty alt is refused."""
    import re

    anim = viz.animate_pendulums(_thetas(3, 1), **TINY)
    data = viz.to_html(anim, alt='Four swings, one "pumped" & up').data
    frames = re.findall(r"<img [^>]*>", data)
    assert len(frames) == 1
    assert 'alt="Four swings, one &quot;pumped&quot; &amp; up"' in frames[0]
    assert 'id="_anim_img' in frames[0]
    assert "alt=" not in viz.to_html(anim).data
    with pytest.raises(ValueError, match="alt"):
        viz.to_html(anim, alt="  ")


def test_save_gif_writes_valid_gif(tmp_path):
    """save_gif writes a GIF that Pillow reads back with one frame per
    animation frame."""
    from PIL import Image

    anim = viz.animate_pendulums(_thetas(6, 2), every=2, **TINY)
    path = tmp_path / "p.gif"
    viz.save_gif(anim, path)
    with Image.open(path) as im:
        assert im.format == "GIF"
        assert im.n_frames == 3
    viz.save_gif(
        viz.animate_pendulums(_thetas(2, 1), **TINY), tmp_path / "q.gif", fps=5
    )
    with Image.open(tmp_path / "q.gif") as im:
        assert im.n_frames == 2


@pytest.mark.parametrize(
    "integrator, step_fn",
    [("semi_implicit", pendulum.step), ("explicit", pendulum.explicit_euler_step)],
)
def test_simulate_matches_rollout_under_constant_torque(integrator, step_fn):
    """simulate under a constant torque equals pendulum.rollout with that
    torque repeated (semi-implicit), or a loop of explicit_euler_step."""
    params = pendulum.PendulumParams.point_mass()
    theta0 = np.array([0.3, -2.0, 3.0], np.float32)
    theta_dot0 = np.array([0.0, 1.0, -0.5], np.float32)
    steps, torque = 40, 0.7
    th, thd = viz.simulate(
        theta0, theta_dot0, torque, steps, params, integrator=integrator
    )
    assert (
        isinstance(th, np.ndarray)
        and th.shape == (steps + 1, 3)
        and thd.shape == (steps + 1, 3)
    )
    if integrator == "semi_implicit":
        ref_th, ref_thd = pendulum.rollout(
            theta0, theta_dot0, np.full((steps, 3), torque, np.float32), params
        )
        ref_th, ref_thd = np.asarray(ref_th), np.asarray(ref_thd)
    else:
        a, b = theta0, theta_dot0
        ref_th, ref_thd = [a], [b]
        for _ in range(steps):
            a, b = step_fn(a, b, np.float32(torque), params)
            ref_th.append(np.asarray(a))
            ref_thd.append(np.asarray(b))
        ref_th, ref_thd = np.array(ref_th), np.array(ref_thd)
    np.testing.assert_allclose(th, ref_th, atol=1e-5)
    np.testing.assert_allclose(thd, ref_thd, atol=1e-5)
    # scalar start state, too
    th1, _ = viz.simulate(0.3, 0.0, torque, steps, params, integrator=integrator)
    assert th1.shape == (steps + 1,)
    np.testing.assert_allclose(th1, th[:, 0], atol=1e-5)


def test_simulate_bad_arguments():
    """simulate rejects an unknown integrator and steps < 1."""
    params = pendulum.PendulumParams.point_mass()
    with pytest.raises(ValueError, match="integrator"):
        viz.simulate(0.0, 0.0, 0.0, 5, params, integrator="rk4")
    with pytest.raises(ValueError, match="steps"):
        viz.simulate(0.0, 0.0, 0.0, 0, params)


def _descendants(widget):
    yield widget
    for child in getattr(widget, "children", ()):
        yield from _descendants(child)


def test_pendulum_explorer_builds_with_eight_sliders(capsys):
    """pendulum_explorer returns an ipywidgets widget with 8 sliders (g, l,
    m, theta0, theta_dot0, torque, dt, steps); moving a slider re-simulates
    without error."""
    import ipywidgets as widgets

    w = viz.pendulum_explorer()
    assert isinstance(w, widgets.Widget)
    sliders = [
        c
        for c in _descendants(w)
        if isinstance(c, (widgets.FloatSlider, widgets.IntSlider))
    ]
    assert len(sliders) == 8
    assert any(isinstance(c, widgets.Output) for c in _descendants(w))
    by_name = {s.description.split()[0]: s for s in sliders}
    assert by_name["g"].value == pytest.approx(9.81)
    assert by_name["θ₀"].value == pytest.approx(2.0)  # opens on a real swing
    by_name["steps"].value = 10  # triggers a redraw
    by_name["g"].value = 1.0
    w2 = viz.pendulum_explorer(pendulum.PendulumParams.gymnasium())
    assert len([c for c in _descendants(w2) if isinstance(c, widgets.FloatSlider)]) == 7


def test_draw_swing_unwraps_the_angle_over_the_top():
    """A pendulum launched fast enough to go over the top keeps turning one way:
    the angle plot climbs by more than 2 pi instead of jumping back at +-pi, and
    the returned angles match viz.simulate."""
    params = pendulum.PendulumParams.point_mass()
    fig, axes = plt.subplots(1, 3)
    th, thd = viz.draw_swing(axes, params, 3.0, 7.5, 0.0, 120)
    plotted = axes[0].lines[0].get_ydata()
    assert plotted[-1] - plotted[0] > 2 * np.pi  # went round at least once
    assert np.max(np.abs(np.diff(plotted))) < 1.0  # no wrap-around jumps
    np.testing.assert_allclose(th, viz.simulate(3.0, 7.5, 0.0, 120, params)[0])
    assert len(axes[2].lines) == 6  # six snapshots
    plt.close(fig)


def test_live_plot_update_returns_figure(capsys):
    """LivePlot.update on a short history returns the figure, with one curve
    per key (missing values skipped) plus a reference line where given."""
    from matplotlib.figure import Figure

    plot = plots.LivePlot(
        ["loss", "ret"], reference={"ret": (-150.0, "target")}, dpi=30
    )
    history = [
        {"env_steps": 0, "loss": 1.0},
        {"env_steps": 10, "loss": 0.5, "ret": -900.0},
        {"env_steps": 20, "loss": 0.2, "ret": -300.0},
    ]
    fig = plot.update(history)
    assert isinstance(fig, Figure)
    loss_ax, ret_ax = plot.axes[:2]
    np.testing.assert_allclose(loss_ax.lines[0].get_xdata(), [0, 10, 20])
    np.testing.assert_allclose(ret_ax.lines[0].get_ydata(), [-900.0, -300.0])
    assert len(ret_ax.lines) == 2  # curve + reference
    assert plot.update(history[:2]) is fig  # redraws the same figure


def test_animate_pendulums_grid_and_titles():
    """cols= sets the grid; titles must match the number of pendulums; NumPy integers are accepted."""
    anim = viz.animate_pendulums(
        np.zeros((4, 6)), cols=3, every=np.int64(2), dpi=30, panel_size=0.8
    )
    assert len(anim._fig.axes) == 6 and anim._fig.axes[
        0
    ].get_subplotspec().get_gridspec().get_geometry() == (2, 3)
    with pytest.raises(ValueError, match="titles"):
        viz.animate_pendulums(np.zeros((4, 6)), titles=["a", "b"])
    with pytest.raises(ValueError, match="cols"):
        viz.animate_pendulums(np.zeros((4, 6)), cols=0)


def test_save_learning_curve_writes_the_figure(tmp_path, monkeypatch):
    """One history to a 600 x 350 PNG: training returns (squares), the
    evaluations (circles, only the records that have one) and the dashed
    solved line."""
    from PIL import Image

    from sacbook.evaluate import SOLVED_RETURN

    history = [
        {"env_steps": 100 * i, "episode_return": -1000.0 + 100 * i} for i in range(1, 5)
    ]
    history[1]["eval_return"] = -600.0
    history[3]["eval_return"] = -150.0
    drawn = {}
    savefig = plt.Figure.savefig

    def keep(fig, path, **kwargs):
        drawn["lines"] = fig.axes[0].get_lines()
        savefig(fig, path, **kwargs)

    monkeypatch.setattr(plt.Figure, "savefig", keep)
    path = tmp_path / "curve.png"
    plots.save_learning_curve(history, path)
    with Image.open(path) as im:
        assert im.size == (600, 350)
    train, evals, solved = drawn["lines"]
    assert train.get_marker() == "s" and list(train.get_xdata()) == [100, 200, 300, 400]
    assert evals.get_marker() == "o" and list(evals.get_ydata()) == [-600.0, -150.0]
    assert solved.get_linestyle() == "--"
    assert list(solved.get_ydata()) == [SOLVED_RETURN] * 2
    assert plt.get_fignums() == []  # closed


def test_save_policy_gif_draws_four_pendulums(tmp_path):
    """The policy's GIF: 100 steps of 4 pendulums from fresh starts, every
    second frame (51 frames)."""
    import jax
    from PIL import Image

    from sacbook.config import TrainConfig

    config = TrainConfig.few_envs()
    params = config.sac.actor().init(jax.random.key(0), np.zeros((1, 3), np.float32))
    path = tmp_path / "policy.gif"
    viz.save_policy_gif(params, config, 0, path)
    with Image.open(path) as im:
        assert im.format == "GIF" and im.n_frames == 51
