"""sacbook.crowd: every pendulum at once, as an angle image and an animated grid."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from sacbook import crowd  # noqa: E402


def test_angle_from_upright_wraps_to_zero_pi():
    theta = np.array([0.0, 0.3, -0.3, np.pi, -np.pi, 1.5 * np.pi, 2 * np.pi + 0.1])
    expected = [0.0, 0.3, 0.3, np.pi, np.pi, 0.5 * np.pi, 0.1]
    np.testing.assert_allclose(crowd.angle_from_upright(theta), expected, atol=1e-12)


def test_start_order_and_upright_fraction():
    thetas = np.array([[3.0, -0.2, 1.0, 0.1], [0.0, 0.4, 2.0, -0.6]])
    np.testing.assert_array_equal(crowd.start_order(thetas), [3, 1, 2, 0])
    # within 0.5 rad of the top: 2 of 4 at first, then 2 of 4 (0.0 and 0.4)
    np.testing.assert_allclose(crowd.upright_fraction(thetas), [0.5, 0.5])
    np.testing.assert_allclose(crowd.upright_fraction(thetas, within=0.05), [0, 0.25])


def _stages(num_steps=12, num=16):
    rng = np.random.default_rng(0)
    start = rng.uniform(-np.pi, np.pi, num)
    time = np.arange(num_steps)[:, None]
    falling = start + 0.1 * time * np.sign(start)
    rising = start * np.exp(-time / 3.0)
    return [falling, rising], ["before", "after"]


def test_plot_angle_image_draws_every_pendulum_sorted_by_start():
    stages, labels = _stages()
    fig = crowd.plot_angle_image(stages, labels, dt=0.5)
    images = [ax.images[0] for ax in fig.axes if ax.images]
    assert len(images) == 2
    order = crowd.start_order(stages[0])
    for image, stage in zip(images, stages):
        # row = pendulum (sorted by start), column = time
        expected = crowd.angle_from_upright(stage[:, order]).T
        np.testing.assert_allclose(np.asarray(image.get_array()), expected)
    fraction_ax = fig.axes[-1] if fig.axes[-1].lines else fig.axes[-2]
    lines = fraction_ax.lines
    assert [line.get_label() for line in lines] == labels
    np.testing.assert_allclose(lines[1].get_ydata(), crowd.upright_fraction(stages[1]))
    # told apart without colour: each stage has its own line style and marker
    assert len({(ln.get_linestyle(), ln.get_marker()) for ln in lines}) == 2
    plt.close(fig)


def test_animate_grid_frames_rods_and_title():
    stages, labels = _stages(num_steps=10, num=16)
    anim = crowd.animate_grid(stages, labels, dt=0.5, every=4, size=2, dpi=30)
    frames = list(anim._iter_gen())
    assert frames == [(k, t) for k in (0, 1) for t in (0, 4, 8)]
    anim._init_draw()
    anim._draw_frame((1, 8))
    rods = anim._fig.axes[0].collections[0]
    segments = np.array(rods.get_segments())  # (N, 2, 2): pivot and tip
    assert segments.shape == (16, 2, 2)
    order = crowd.start_order(stages[0])
    theta = stages[1][8, order]
    np.testing.assert_allclose(
        segments[:, 1, 0] - segments[:, 0, 0], 0.42 * np.sin(theta)
    )
    np.testing.assert_allclose(
        segments[:, 1, 1] - segments[:, 0, 1], 0.42 * np.cos(theta)
    )
    # a 4 x 4 grid of pivots at the cell centres
    assert sorted(set(np.round(segments[:, 0, 0], 6))) == [0.5, 1.5, 2.5, 3.5]
    title = anim._fig.axes[0].get_title()
    upright = np.mean(crowd.angle_from_upright(theta) < crowd.UPRIGHT)
    assert title.startswith("after") and "t = 4.0 s" in title
    assert f"{upright:4.0%}" in title
    plt.close(anim._fig)


@pytest.mark.parametrize(
    "thetas, labels, match",
    [
        (np.zeros(5), None, "thetas must be"),
        ([np.zeros((4, 3)), np.zeros((5, 3))], None, "one shape"),
        ([np.zeros((4, 3))] * 2, ["only one"], "labels must have one entry"),
    ],
)
def test_bad_input_is_one_clear_error(thetas, labels, match):
    with pytest.raises(ValueError, match=match):
        crowd.plot_angle_image(thetas, labels)
    with pytest.raises(ValueError, match=match):
        crowd.animate_grid(thetas, labels)
    with pytest.raises(ValueError, match="every"):
        crowd.animate_grid(np.zeros((4, 3)), every=0)
