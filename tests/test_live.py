"""The live views' JavaScript is the same pendulum and the same policy as the package.

``sacbook/static/sacbook_live.js`` runs in headless Chromium (a local HTTP
server, nothing from the network) and is compared with :mod:`sacbook.pendulum`
and the JAX actor:

* one step, both presets and a changed body, against a float64 evaluation of
  ``pendulum.env_step``: within 1e-12; 200-step trajectories within 1e-9;
* the actor on 1,000 random observations: torques within 1e-5 of JAX's;
* closed loop: from 256 hanging starts, the exported policy in JavaScript first
  reaches upright at the same step as in JAX (float32), within one step, for
  at least 95% of the starts;
* the page: every view of :mod:`sacbook.live` mounts, draws, animates, answers
  a slider, a drag of the bob and a key, with no console error, at 1280 and
  400 px wide. Frame rates are measured and printed, not asserted.

Skipped without chromium, unless ``SACBOOK_BROWSER_REQUIRED=1`` (CI's browser
step, which runs this file too) makes that a failure. Without a browser: each
chapter inlines the current module and policies, and ``scripts/make_policies.py
--check`` finds the committed policies to be what it makes.
"""

import dataclasses
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from angles import x64

from sacbook import export, live, networks, pendulum
from sacbook.pendulum import PendulumParams

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "browser"))

from browser_cdp import Browser, find_chrome  # noqa: E402
from check_book import serve  # noqa: E402

CHROME = find_chrome()
REQUIRED = os.environ.get("SACBOOK_BROWSER_REQUIRED", "") not in ("", "0")
MODULE = ROOT / "sacbook" / "static" / "sacbook_live.js"
POLICIES = ROOT / "sacbook" / "static" / "policies"
PHYSICS = {
    "gymnasium": PendulumParams.gymnasium(),
    "point_mass": PendulumParams.point_mass(),
    "heavy long rod": PendulumParams.gymnasium(m=2.3, l=1.7, dt=0.03, g=9.81),
}


class Console:
    """Console errors and uncaught exceptions of a page."""

    def __init__(self, page):
        self.errors: list[str] = []
        page.on("Runtime.exceptionThrown", self._exception)
        page.on("Runtime.consoleAPICalled", self._console)
        page.on("Log.entryAdded", self._log)

    def _exception(self, p):
        d = p["exceptionDetails"]
        self.errors.append(d.get("exception", {}).get("description") or d["text"])

    def _console(self, p):
        if p["type"] in ("error", "assert"):
            self.errors.append(" ".join(str(a.get("value", a)) for a in p["args"]))

    def _log(self, p):
        entry = p["entry"]  # (the browser's own favicon probe is not the page's)
        if entry["level"] == "error" and "favicon" not in entry.get("url", ""):
            self.errors.append(entry["text"])


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A folder served on localhost: the module, and a page of every view."""
    if CHROME is None:
        if REQUIRED:
            pytest.fail("SACBOOK_BROWSER_REQUIRED is set, but there is no chromium")
        pytest.skip("no chromium on PATH (apt-get install chromium)")
    folder = tmp_path_factory.mktemp("live")
    (folder / "sacbook_live.js").write_text(MODULE.read_text())
    (folder / "module.html").write_text(
        '<!doctype html><meta charset="utf-8"><title>module</title>'
        '<script type="module">import * as live from "./sacbook_live.js";'
        "window.live = live;</script>"
    )
    views = [
        live.explorer(),
        live.squashed_gaussian(mean=0.5, log_std=0.3),
        live.policy("chapter3"),
        live.grid(
            ["chapter4_iteration20", "chapter4_iteration100", "chapter4_iteration300"],
            ["after 20 iterations", "after 100", "after 300"],
        ),
    ]
    body = "\n".join(f"<section>{v.data}</section>" for v in views)
    (folder / "views.html").write_text(
        '<!doctype html><meta charset="utf-8"><title>views</title>'
        '<meta name="viewport" content="width=device-width">'
        f'<body style="margin:0 auto;max-width:760px;padding:0 8px">{body}</body>'
    )
    server, origin = serve(folder)
    yield origin
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def browser(site):
    with Browser(CHROME) as b:
        yield b


def open_page(browser, url, width=1280, height=900):
    page = browser.new_page()
    console = Console(page)
    loaded = threading.Event()
    page.on("Page.loadEventFired", lambda p: loaded.set())
    for domain in ("Runtime", "Log", "Page"):
        page.send(f"{domain}.enable")
    page.send(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
    )
    page.send("Page.navigate", {"url": url})
    assert loaded.wait(30), f"{url} did not load"
    return page, console


@pytest.fixture(scope="module")
def js(browser, site):
    """``js(expression, **values)``: evaluate with ``live`` (the module) and the
    values bound as constants; returns the JSON result."""
    page, console = open_page(browser, f"{site}/module.html")
    deadline = time.monotonic() + 10
    while not page.evaluate("!!window.live") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert page.evaluate("!!window.live"), console.errors

    def run(expression, **values):
        binds = "".join(f"const {k} = {json.dumps(v)};" for k, v in values.items())
        return page.evaluate(
            f"(() => {{ const live = window.live; {binds} {expression} }})()"
        )

    yield run
    assert not console.errors, console.errors
    page.close()


def _float32s(rng, low, high, n):
    """Uniform float32 values, as float64 arrays (so both sides get the same)."""
    return rng.uniform(low, high, n).astype(np.float32).astype(np.float64)


# -- physics -------------------------------------------------------------------


@pytest.mark.parametrize("name", PHYSICS)
def test_one_step_matches_float64_python(js, name):
    params = PHYSICS[name]
    rng = np.random.default_rng(0)
    n = 2000
    theta = rng.uniform(-4.0, 4.0, n)  # beyond +-pi too: the wrap
    theta[:4] = [np.pi, -np.pi, 0.0, np.nextafter(np.pi, 0)]
    theta_dot = rng.uniform(-10.0, 10.0, n)  # beyond the speed limit too
    torque = _float32s(rng, -3.0, 3.0, n)  # env_step rounds torques to float32
    with x64():
        # env_step's physics: its reward, its step, its observation. (env_step
        # itself rounds the torque to float32 first; compared below.)
        t64, td64 = pendulum.step(theta, theta_dot, torque, params)
        want = {
            "theta": np.asarray(t64),
            "theta_dot": np.asarray(td64),
            "reward": np.asarray(pendulum.reward(theta, theta_dot, torque, params)),
        }
        assert want["theta"].dtype == np.float64
        state = pendulum.EnvState(
            theta=jnp.asarray(theta),
            theta_dot=jnp.asarray(theta_dot),
            time=jnp.zeros(n, jnp.int32),
            episode_return=jnp.zeros(n),
        )
        new, result = pendulum.env_step(state, torque, jax.random.key(0), params)
    got = js(
        """const p = live.makeParams(preset, physics);
        const out = {theta: [], theta_dot: [], reward: [], obs: []};
        theta.forEach((th, i) => {
          const r = live.envStep({theta: th, thetaDot: theta_dot[i], time: 0}, torque[i], p);
          out.theta.push(r.state.theta); out.theta_dot.push(r.state.thetaDot);
          out.reward.push(r.reward); out.obs.push(r.finalObs);
        });
        return out;""",
        preset="point_mass" if params.body == "point_mass" else "gymnasium",
        physics=dataclasses.asdict(params),
        theta=theta.tolist(),
        theta_dot=theta_dot.tolist(),
        torque=torque.tolist(),
    )
    errors = {k: float(np.max(np.abs(np.asarray(got[k]) - want[k]))) for k in want}
    print(f"{name}: one step, JS - float64 Python: {errors}")
    assert max(errors.values()) < 1e-12, errors
    # env_step itself, with its float32 torque and observation
    np.testing.assert_allclose(got["theta_dot"], np.asarray(new.theta_dot), atol=1e-7)
    np.testing.assert_allclose(got["reward"], np.asarray(result.reward), atol=1e-7)
    np.testing.assert_allclose(got["obs"], np.asarray(result.final_obs), atol=6e-7)
    # and the float64 evaluation is the float32 physics, to float32 accuracy
    s32, r32 = pendulum.env_step(
        pendulum.EnvState(
            theta=jnp.asarray(theta, jnp.float32),
            theta_dot=jnp.asarray(theta_dot, jnp.float32),
            time=jnp.zeros(n, jnp.int32),
            episode_return=jnp.zeros(n, jnp.float32),
        ),
        torque,
        jax.random.key(0),
        params,
    )
    np.testing.assert_allclose(np.asarray(s32.theta_dot), want["theta_dot"], atol=2e-5)


@pytest.mark.parametrize("name", PHYSICS)
def test_trajectories_of_200_steps_match(js, name):
    params = PHYSICS[name]
    rng = np.random.default_rng(1)
    n, steps = 64, 200
    theta0, theta_dot0 = rng.uniform(-np.pi, np.pi, n), rng.uniform(-1, 1, n)
    torques = rng.uniform(-2.5, 2.5, (steps, n))

    def body(carry, torque):
        carry = pendulum.step(*carry, torque, params)
        return carry, carry

    with x64():
        _, (thetas, theta_dots) = jax.lax.scan(
            body, (jnp.asarray(theta0), jnp.asarray(theta_dot0)), jnp.asarray(torques)
        )
        want = np.stack([np.asarray(thetas), np.asarray(theta_dots)])
    got = js(
        """const p = live.makeParams(preset, physics);
        const th = [...theta0], thd = [...theta_dot0], out = [[], []];
        torques.forEach((row) => {
          row.forEach((u, i) => { [th[i], thd[i]] = live.step(th[i], thd[i], u, p); });
          out[0].push([...th]); out[1].push([...thd]);
        });
        return out;""",
        preset="point_mass" if params.body == "point_mass" else "gymnasium",
        physics=dataclasses.asdict(params),
        theta0=theta0.tolist(),
        theta_dot0=theta_dot0.tolist(),
        torques=torques.tolist(),
    )
    got = np.asarray(got)
    angle = np.max(np.abs(np.angle(np.exp(1j * (got[0] - want[0])))))
    speed = np.max(np.abs(got[1] - want[1]))
    print(
        f"{name}: 200 steps x {n}, JS - float64 Python: angle {angle:.1e}, "
        f"speed {speed:.1e}"
    )
    assert angle < 1e-9 and speed < 1e-9, (angle, speed)


def test_bad_physics_is_refused_with_the_parameter_named(js):
    message = js(
        """try { live.makeParams("gymnasium", {l: -1}); return "accepted"; }
        catch (e) { return e.message; }"""
    )
    assert message.startswith("l must be > 0"), message


# -- the actor -----------------------------------------------------------------


@pytest.mark.parametrize("name", ["chapter3", "chapter4_iteration20"])
def test_actor_matches_jax(js, name):
    data = json.loads((POLICIES / f"{name}.json").read_text())
    params, config, env, _ = export.read_policy(data)
    rng = np.random.default_rng(2)
    theta, theta_dot = rng.uniform(-np.pi, np.pi, 1000), rng.uniform(-8, 8, 1000)
    obs = np.asarray(pendulum.observe(theta, theta_dot))  # float32, (1000, 3)
    mean, _ = config.actor().apply(params, obs)
    torque = networks.scale_action(
        networks.deterministic_action(mean)[:, 0], env.max_torque
    )
    got = js(
        """const policy = new live.Policy(data);
        return obs.map((o) => [policy.mean(o)[0], policy.torque(o)]);""",
        data=data,
        obs=obs.astype(np.float64).tolist(),
    )
    got = np.asarray(got)
    mean_error = np.max(np.abs(got[:, 0] - np.asarray(mean)[:, 0]))
    torque_error = np.max(np.abs(got[:, 1] - np.asarray(torque)))
    print(
        f"{name}: 1000 observations, JS - JAX: mean {mean_error:.1e}, "
        f"torque {torque_error:.1e}"
    )
    assert torque_error < 1e-5, torque_error
    assert mean_error < 1e-5 * max(1.0, float(np.max(np.abs(mean)))), mean_error


def test_closed_loop_swings_up_at_the_same_step(js):
    data = json.loads((POLICIES / "chapter3.json").read_text())
    params, config, env, _ = export.read_policy(data)
    rng = np.random.default_rng(3)
    n, steps = 256, 200
    theta0 = np.asarray(
        pendulum.wrap_angle(np.pi + rng.uniform(-0.3, 0.3, n).astype(np.float32))
    )
    theta_dot0 = rng.uniform(-0.5, 0.5, n).astype(np.float32)
    actor = config.actor()

    @jax.jit
    def rollout(theta, theta_dot):
        def body(carry, _):
            th, thd = carry
            mean, _ = actor.apply(params, pendulum.observe(th, thd))
            u = networks.scale_action(
                networks.deterministic_action(mean)[:, 0], env.max_torque
            )
            th, thd = pendulum.step(th, thd, u, env)
            return (th, thd), th

        return jax.lax.scan(body, (theta, theta_dot), None, length=steps)[1]

    thetas = np.asarray(rollout(jnp.asarray(theta0), jnp.asarray(theta_dot0)))
    up = np.abs(thetas) < live_upright(js)
    want = np.where(up.any(axis=0), up.argmax(axis=0), -1)
    got = np.asarray(
        js(
            """const policy = new live.Policy(data), p = policy.physics;
            return theta0.map((th, i) => {
              let thd = theta_dot0[i];
              for (let k = 0; k < steps; k++) {
                const u = policy.torque(live.observe(th, thd));
                [th, thd] = live.step(th, thd, u, p);
                if (Math.abs(th) < live.UPRIGHT) return k;
              }
              return -1;
            });""",
            data=data,
            theta0=theta0.astype(np.float64).tolist(),
            theta_dot0=theta_dot0.astype(np.float64).tolist(),
            steps=steps,
        )
    )
    assert np.mean(want >= 0) >= 0.95, "the policy should swing up from hanging"
    agree = np.mean((got >= 0) & (np.abs(got - want) <= 1))
    exact = np.mean(got == want)
    print(
        f"closed loop, {n} hanging starts: first upright at the same step "
        f"(+-1) {agree:.1%}, exactly {exact:.1%}; median step {np.median(want):.0f}"
    )
    assert agree >= 0.95, agree


def live_upright(js) -> float:
    """The JavaScript's upright threshold, which is sacbook.crowd's."""
    from sacbook import crowd

    threshold = js("return live.UPRIGHT;")
    assert threshold == crowd.UPRIGHT
    return threshold


# -- the page ------------------------------------------------------------------

VIEWS = ("explorer", "squashed", "policy", "grid")  # the order of views.html
ANIMATED = ("explorer", "policy", "grid")


def _view(page, i, expression):
    """Evaluate ``expression`` with ``root`` (the i-th view's element) and
    ``view`` (what mount returned) bound."""
    return page.evaluate(
        "(() => { const root = document.querySelectorAll('.sacbook-live')"
        f"[{i}]; const view = root.sacbookLive; return {expression}; }})()"
    )


def _ink(page, i, canvas=0):
    """How many pixels of a view's canvas are drawn, and a checksum of them."""
    return _view(
        page,
        i,
        f"""(() => {{ const c = root.querySelectorAll('canvas')[{canvas}];
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0, sum = 0;
        for (let k = 3; k < d.length; k += 4) if (d[k]) {{ n++; sum = (sum * 31 + d[k - 3] + k) % 1e9; }}
        return [n, sum]; }})()""",
    )


def _centre(page, i, selector):
    """The centre of an element in view i, scrolled into the window."""
    return _view(
        page,
        i,
        f"""(() => {{ const el = root.querySelector({json.dumps(selector)});
        el.scrollIntoView({{block: 'center'}}); const r = el.getBoundingClientRect();
        return {{x: r.left + r.width / 2, y: r.top + r.height / 2, w: r.width, h: r.height}}; }})()""",
    )


def _mouse(page, kind, x, y):
    page.send(
        "Input.dispatchMouseEvent",
        {"type": kind, "x": x, "y": y, "button": "left", "clickCount": 1},
    )


def _click(page, x, y):
    _mouse(page, "mousePressed", x, y)
    _mouse(page, "mouseReleased", x, y)


def _key(page, key, code):
    for kind in ("keyDown", "keyUp"):
        page.send(
            "Input.dispatchKeyEvent",
            {"type": kind, "key": key, "code": key, "windowsVirtualKeyCode": code},
        )


def _open_views(browser, site, width):
    page, console = open_page(browser, f"{site}/views.html", width)
    deadline = time.monotonic() + 20
    mounted = 0
    while mounted < len(VIEWS) and time.monotonic() < deadline:
        time.sleep(0.1)
        mounted = page.evaluate(
            "[...document.querySelectorAll('.sacbook-live')].filter(r => r.sacbookLive).length"
        )
    assert mounted == len(VIEWS), (mounted, console.errors)
    return page, console


@pytest.mark.parametrize("width", [1280, 400])
def test_every_view_runs_and_answers_the_reader(browser, site, width):
    page, console = _open_views(browser, site, width)
    try:
        for i, kind in enumerate(VIEWS):
            _centre(page, i, "canvas")
            time.sleep(0.3)
            ink = _ink(page, i)
            assert ink[0] > 500, f"{kind}: the canvas is blank"
            if kind in ANIMATED:
                before = _view(page, i, "[view.stats.frames, view.state.time]")
                time.sleep(0.8)
                after = _view(page, i, "[view.stats.frames, view.state.time]")
                assert after[0] >= before[0] + 5, f"{kind} does not animate: {after}"
                assert after[1] > before[1], f"{kind}: time stands still"
                assert _ink(page, i) != ink, f"{kind}: the picture does not change"
            fits = _view(
                page,
                i,
                "[root.getBoundingClientRect().right, root.scrollWidth, root.clientWidth]",
            )
            assert fits[0] <= width and fits[1] <= fits[2] + 1, (kind, fits)

        # a slider, by keyboard: the explorer's gravity, the squashed mean
        for i, name, step in ((0, "view.params.g", 0.1), (1, "view.state.mu", 0.05)):
            ink = _ink(page, i, canvas=1 if i == 0 else 0)
            box = _centre(page, i, "input[type=range]")
            _view(page, i, "root.querySelector('input[type=range]').focus()")
            value = _view(page, i, name)
            _key(page, "ArrowRight", 39)
            assert _view(page, i, name) == pytest.approx(value + step, abs=0.011)
            assert box["w"] > 50, box
            if i == 1:
                assert _ink(page, i) != ink, "the squashed Gaussian's plot is the same"
        # the policy: pause with its button, push with a key, drag the bob
        policy = VIEWS.index("policy")
        pause = _centre(page, policy, "button")
        _click(page, pause["x"], pause["y"])
        assert _view(page, policy, "view.animation.playing()") is False
        canvas = _centre(page, policy, "canvas")
        _click(page, canvas["x"], canvas["y"] + 0.3 * canvas["h"])  # focus
        speed = _view(page, policy, "view.state.thetaDot")
        _key(page, "ArrowRight", 39)
        assert _view(page, policy, "view.state.thetaDot") == pytest.approx(
            min(speed + 3, 8)
        )
        pause = _centre(page, policy, "button")
        _click(page, pause["x"], pause["y"])  # play again
        assert _view(page, policy, "view.animation.playing()") is True
        canvas = _centre(page, policy, "canvas")
        r = 0.4 * min(canvas["w"], canvas["h"])
        _mouse(page, "mousePressed", canvas["x"], canvas["y"] + r)  # the hanging bob
        _mouse(page, "mouseMoved", canvas["x"] + r, canvas["y"])  # to the right
        theta = _view(page, policy, "view.state.theta")
        assert theta == pytest.approx(np.pi / 2, abs=0.05), theta
        _mouse(page, "mouseReleased", canvas["x"] + r, canvas["y"])
        t0 = _view(page, policy, "view.state.time")
        time.sleep(0.5)
        assert _view(page, policy, "view.state.dragging") is None
        assert _view(page, policy, "view.state.time") > t0, "it did not go on"

        # physics by slider: the policy's mass
        _view(page, policy, "root.querySelector(\"input[min='0.1']\").focus()")
        mass = _view(page, policy, "view.params.m")
        _key(page, "ArrowRight", 39)
        assert _view(page, policy, "view.params.m") == pytest.approx(mass + 0.1)

        # the grid: restart puts every pendulum back at its start
        grid = VIEWS.index("grid")
        restart = _centre(page, grid, "button:nth-of-type(2)")
        _click(page, restart["x"], restart["y"])
        assert _view(page, grid, "view.state.time") < 0.2
        counts = _view(page, grid, "view.stages.map(s => s.upright)")
        assert len(counts) == 3 and all(0 <= c <= 1024 for c in counts)
        captions = _view(
            page,
            grid,
            "[...root.querySelectorAll('figcaption')].map(c => c.textContent)",
        )
        assert all("of 1024 upright" in c for c in captions), captions

        scroll = page.evaluate(
            "[document.documentElement.scrollWidth, document.documentElement.clientWidth]"
        )
        assert scroll[0] <= scroll[1], f"the page scrolls sideways: {scroll}"
        time.sleep(0.2)
        assert not console.errors, console.errors
    finally:
        page.close()


def test_frame_rates_at_1280_px(browser, site):
    """A benchmark, printed: frames per second of one pendulum and of the grid."""
    page, console = _open_views(browser, site, 1280)
    try:
        rates = {}
        for kind in ("policy", "grid"):
            i = VIEWS.index(kind)
            _centre(page, i, "canvas")
            time.sleep(0.5)
            f0, s0 = _view(page, i, "[view.stats.frames, performance.now()]")
            time.sleep(3)
            f1, s1 = _view(page, i, "[view.stats.frames, performance.now()]")
            rates[kind] = (f1 - f0) / ((s1 - s0) / 1000)
        print(
            f"frame rate at 1280 px: one pendulum {rates['policy']:.0f} fps, "
            f"3 x 1024 pendulums {rates['grid']:.0f} fps"
        )
        assert all(r > 0 for r in rates.values()), rates
        assert not console.errors, console.errors
    finally:
        page.close()


# -- the Python side -----------------------------------------------------------


def test_a_view_holds_the_module_and_its_settings():
    text = live.policy("chapter3").data
    assert live.module_text() in text
    assert text.count('<script type="module">') == 1
    config = text.split('<script type="application/json">', 1)[1].split("</script>")[0]
    assert json.loads(config)["policy"]["info"]["config"] == "TrainConfig.few_envs()"
    sneaky = live.view_html({"view": "squashed", "note": "</script><b>"}, "x")
    assert "</script><b>" not in sneaky and json.loads(
        sneaky.split('"application/json">')[1].split("</script>")[0]
    ) == {"view": "squashed", "note": "</script><b>"}


@pytest.mark.parametrize(
    "call, words",
    [
        (lambda: live.policy("chapter9"), "policy must be one of"),
        (lambda: live.grid(["chapter3"], ["a", "b"]), "labels must give one caption"),
        (lambda: live.explorer(theta=float("nan")), "theta must be a real number"),
        (lambda: live.grid(["chapter3"], ["a"], count=0), "count must be"),
        (lambda: live.explorer(params="gymnasium"), "params must be a PendulumParams"),
    ],
)
def test_bad_input_is_refused_in_one_line(call, words):
    with pytest.raises(ValueError, match=words) as info:
        call()
    assert "\n" not in str(info.value)


CHAPTERS = ("01_physics", "02_networks", "03_sac", "04_gpu_scaling")


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_each_chapter_shows_a_live_view_of_the_current_module(chapter):
    """The chapters are committed executed: their live views must inline the
    module and the policies as they are now."""
    notebook = json.loads((ROOT / "book" / f"{chapter}.ipynb").read_text())
    shown = 0
    for cell in notebook["cells"]:
        outputs = "".join(
            "".join(o.get("data", {}).get("text/html", ""))
            for o in cell.get("outputs", [])
        )
        if 'class="sacbook-live"' not in outputs:
            continue
        shown += 1
        rerun = f"run: python scripts/run_notebook.py book/{chapter}.ipynb"
        assert live.module_text() in outputs, f"an older sacbook_live.js; {rerun}"
        source = "".join(cell["source"])
        for name in live.policy_names():
            if f'"{name}"' in source:
                text = json.dumps(live.load_policy(name), separators=(",", ":"))
                assert text.replace("</", "<\\/") in outputs, (
                    f"an older {name}; {rerun}"
                )
    assert shown >= 1, f"{chapter} shows no live view"


@pytest.mark.slow  # and another JAX (Colab's) trains other bits
def test_committed_policies_are_what_the_script_makes():
    """Regenerates all four (two training runs, about 15 s) and compares bytes."""
    run = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "make_policies.py"), "--check"],
        env={**os.environ, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout + run.stderr[-3000:]
    sizes = [p.stat().st_size for p in POLICIES.glob("*.json")]
    assert len(sizes) == 4 and max(sizes) < 100_000, sizes
    assert MODULE.stat().st_size < 40_000
