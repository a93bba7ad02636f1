// sacbook_live.js: the book's pendulum and its trained policies, live in a browser.
//
// A plain ES module with no dependencies and no build step. The physics is
// sacbook.pendulum's, evaluated in float64; the policy is a sacbook-policy v1
// file (sacbook.export) run forward deterministically. mount(root) turns a
// <div class="sacbook-live"> holding a <script type="application/json"> config
// into one of four views: "explorer", "policy", "squashed" or "grid".
// tests/test_live.py checks all of it against the Python package.

// ---- physics (sacbook.pendulum) -----------------------------------------

/** The presets of sacbook.pendulum.PendulumParams. */
export const PRESETS = {
  point_mass: { g: 9.81, l: 1, m: 1, dt: 0.05, max_torque: 2, max_speed: 8,
    episode_length: 200, body: "point_mass" },
  gymnasium: { g: 10, l: 1, m: 1, dt: 0.05, max_torque: 2, max_speed: 8,
    episode_length: 200, body: "rod" },
};
/** A pendulum within this angle [rad] of the top counts as upright. */
export const UPRIGHT = 0.5;
const RESET_MAX_SPEED = 1;
// 2 pi as a float32 head plus the rest, as sacbook.fastmath splits it
const TWO_PI_HI = Math.fround(2 * Math.PI);
const TWO_PI_LO = 2 * Math.PI - TWO_PI_HI;
const BELOW_PI = Math.PI - 2 ** -51; // the largest double below pi

const clip = (x, lo, hi) => Math.min(Math.max(x, lo), hi);

/** Physics parameters: a preset's (by name) with some fields replaced. */
export function makeParams(preset = "gymnasium", overrides = {}) {
  if (!(preset in PRESETS)) throw new Error(`preset must be one of ${Object.keys(PRESETS)}, got ${preset}`);
  const p = { ...PRESETS[preset], ...overrides };
  for (const k of ["g", "l", "m", "dt", "max_speed"]) {
    if (!(p[k] > 0)) throw new Error(`${k} must be > 0, got ${p[k]}`);
  }
  if (!(p.max_torque >= 0)) throw new Error(`max_torque must be >= 0, got ${p.max_torque}`);
  if (p.body !== "rod" && p.body !== "point_mass") throw new Error(`body must be "rod" or "point_mass", got ${p.body}`);
  return p;
}

/** a in theta_ddot = a sin(theta) + b torque: g/l, or 3g/(2l) for a rod. */
export function gravityCoefficient(p) {
  return p.body === "rod" ? (3.0 * p.g) / (2.0 * p.l) : p.g / p.l;
}

/** b in theta_ddot = a sin(theta) + b torque: 1/(m l^2), or 3/(m l^2) for a rod. */
export function torqueCoefficient(p) {
  const inertia = p.body === "rod" ? (p.m * (p.l * p.l)) / 3.0 : p.m * (p.l * p.l);
  return 1.0 / inertia;
}

/** An angle wrapped to [-pi, pi), as sacbook.fastmath.wrap_angle. */
export function wrapAngle(theta) {
  const turns = Math.floor((theta + Math.PI) * (0.5 / Math.PI));
  let w = theta - turns * TWO_PI_HI - turns * TWO_PI_LO;
  if (w >= Math.PI) w = w - TWO_PI_HI - TWO_PI_LO;
  if (w < -Math.PI) w = w + TWO_PI_HI + TWO_PI_LO;
  return clip(w, -Math.PI, BELOW_PI);
}

/** One semi-implicit Euler step: [theta, thetaDot] after dt (pendulum.step). */
export function step(theta, thetaDot, torque, p) {
  const u = clip(torque, -p.max_torque, p.max_torque);
  const accel = gravityCoefficient(p) * Math.sin(wrapAngle(theta)) + torqueCoefficient(p) * u;
  const w = clip(thetaDot + p.dt * accel, -p.max_speed, p.max_speed);
  return [wrapAngle(theta + p.dt * w), w];
}

/** The observation [cos(theta), sin(theta), thetaDot]. */
export function observe(theta, thetaDot) {
  return [Math.cos(theta), Math.sin(theta), thetaDot];
}

/** The reward -(theta^2 + 0.1 thetaDot^2 + 0.001 torque^2), wrapped and clipped. */
export function reward(theta, thetaDot, torque, p) {
  const th = wrapAngle(theta);
  const u = clip(torque, -p.max_torque, p.max_torque);
  return -(th * th + 0.1 * (thetaDot * thetaDot) + 0.001 * (u * u));
}

/**
 * One environment step with the time limit (pendulum.env_step for one pendulum).
 * state: {theta, thetaDot, time}; random() draws uniformly from [0, 1) for resets.
 * Returns {state, reward, truncated, finalObs, obs}.
 */
export function envStep(state, torque, p, random = Math.random) {
  const r = reward(state.theta, state.thetaDot, torque, p);
  const [theta, thetaDot] = step(state.theta, state.thetaDot, torque, p);
  const time = state.time + 1;
  const truncated = time >= p.episode_length;
  const finalObs = observe(theta, thetaDot);
  if (!truncated) return { state: { theta, thetaDot, time }, reward: r, truncated, finalObs, obs: finalObs };
  const next = { theta: (2 * random() - 1) * Math.PI, thetaDot: (2 * random() - 1) * RESET_MAX_SPEED, time: 0 };
  return { state: next, reward: r, truncated, finalObs, obs: observe(next.theta, next.thetaDot) };
}

// ---- the policy (sacbook.export, sacbook.networks) ----------------------

const ACTIVATIONS = {
  relu: (x) => (x > 0 ? x : 0),
  tanh: Math.tanh,
  swish: (x) => x / (1 + Math.exp(-x)),
  elu: (x) => (x > 0 ? x : Math.expm1(x)),
};

/** A sacbook-policy v1 actor, run deterministically: torque = max_torque tanh(mean). */
export class Policy {
  constructor(data) {
    if (!data || data.format !== "sacbook-policy" || data.version !== 1) {
      throw new Error(`policy: expected format "sacbook-policy" version 1, got ${data && data.format} ${data && data.version}`);
    }
    this.activation = ACTIVATIONS[data.activation];
    if (!this.activation) throw new Error(`policy: unknown activation ${data.activation}`);
    this.physics = makeParams(data.physics.body === "rod" ? "gymnasium" : "point_mass", data.physics);
    this.actionDim = data.action_dim || 1;
    this.info = data.info || {};
    // each kernel flattened row-major: w[i * nOut + j] is input i to output j
    this.layers = data.layers.map(({ kernel, bias }) => ({
      nIn: kernel.length, nOut: bias.length, w: Float64Array.from(kernel.flat()), b: Float64Array.from(bias),
    }));
    if (this.layers[0].nIn !== 3) throw new Error(`policy: the first layer takes ${this.layers[0].nIn} inputs, not 3`);
    const widest = Math.max(...this.layers.map((l) => l.nOut));
    this.scratch = [new Float64Array(widest), new Float64Array(widest)];
  }

  /** The Gaussian's mean (the first actionDim outputs) for one observation. */
  mean(obs) {
    let x = obs, n = this.layers.length;
    for (let k = 0; k < n; k++) {
      const { nIn, nOut, w, b } = this.layers[k];
      const last = k === n - 1, width = last ? this.actionDim : nOut;
      const y = this.scratch[k % 2];
      for (let j = 0; j < width; j++) y[j] = b[j];
      for (let i = 0; i < nIn; i++) {
        const xi = x[i];
        if (xi === 0) continue; // after a ReLU, about half are
        const row = i * nOut;
        for (let j = 0; j < width; j++) y[j] += xi * w[row + j];
      }
      if (!last) for (let j = 0; j < width; j++) y[j] = this.activation(y[j]);
      x = y;
    }
    return Array.from(x.subarray(0, this.actionDim));
  }

  /** The deterministic torque for one observation. */
  torque(obs, maxTorque = this.physics.max_torque) {
    return maxTorque * Math.tanh(this.mean(obs)[0]);
  }
}

// ---- the squashed Gaussian (sacbook.networks) ---------------------------

/** Density of a = tanh(u), u ~ N(mu, sigma), at a in (-1, 1); without the
 * log-det correction it is the Gaussian's density at atanh(a) alone. */
export function squashedDensity(a, mu, logStd, corrected = true) {
  const u = Math.atanh(a), sigma = Math.exp(logStd), z = (u - mu) / sigma;
  const gauss = Math.exp(-0.5 * z * z) / (sigma * Math.sqrt(2 * Math.PI));
  return corrected ? gauss / (1 - a * a) : gauss;
}

/** Entropy [nats] of the squashed Gaussian, and the area under the uncorrected
 * curve, both integrated over u on a fine grid. */
export function squashedStats(mu, logStd) {
  const sigma = Math.exp(logStd), n = 4000, lo = mu - 9 * sigma, du = (18 * sigma) / n;
  let entropy = 0, area = 0;
  for (let k = 0; k < n; k++) {
    const u = lo + (k + 0.5) * du, z = (u - mu) / sigma;
    const p = Math.exp(-0.5 * z * z) / (sigma * Math.sqrt(2 * Math.PI));
    const t = Math.tanh(u);
    // log(1 - tanh^2 u) in the stable form of networks.squashed_log_prob
    const logDet = 2 * (Math.LN2 - Math.abs(u) - Math.log1p(Math.exp(-2 * Math.abs(u))));
    entropy -= p * (Math.log(p) - logDet) * du;
    area += p * (1 - t * t) * du;
  }
  return { entropy, area };
}

// ---- a small seeded generator, so every reader sees the same starts ------

export function mulberry32(seed) {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// ---- the page: controls ------------------------------------------------

const STYLE = `
.sacbook-live{max-width:100%;box-sizing:border-box;font:14px/1.4 system-ui,sans-serif;border:1px solid #ccc;border-radius:6px;padding:8px;margin:8px 0}
.sacbook-live canvas{display:block;width:100%;touch-action:none;border-radius:4px;background:#fff}
.sacbook-live canvas:focus-visible{outline:2px solid #1f59bf}
.sacbook-live .sl-bar{display:flex;flex-wrap:wrap;gap:6px;margin:6px 0;align-items:center}
.sacbook-live button{font:inherit;padding:4px 10px;min-height:32px;border:1px solid #888;border-radius:4px;background:#f4f4f4;color:#222;cursor:pointer}
.sacbook-live button[aria-pressed=true]{background:#1f59bf;color:#fff}
.sacbook-live .sl-sliders{display:grid;grid-template-columns:repeat(auto-fill,minmax(230px,1fr));gap:2px 14px}
.sacbook-live .sl-slider{display:grid;grid-template-columns:92px 1fr 52px;align-items:center;gap:6px}
.sacbook-live input[type=range]{width:100%;min-width:0;margin:0}
.sacbook-live output{font-variant-numeric:tabular-nums;text-align:right}
.sacbook-live .sl-status{font-variant-numeric:tabular-nums;min-height:1.4em}
.sacbook-live .sl-grids{display:grid;grid-template-columns:repeat(auto-fit,minmax(min(100%,200px),1fr));gap:8px}
.sacbook-live figure{margin:0}.sacbook-live figcaption{font-size:13px;text-align:center}
`;

function addStyle(doc) {
  if (doc.getElementById("sacbook-live-style")) return;
  const style = doc.createElement("style");
  style.id = "sacbook-live-style";
  style.textContent = STYLE;
  doc.head.appendChild(style);
}

function make(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v);
  }
  el.append(...children);
  return el;
}

let uid = 0;

/** A labelled range input; onInput(value) runs on every change. */
function slider({ label, min, max, step, value, digits = 2, onInput }) {
  const id = `sacbook-live-${++uid}`;
  const input = make("input", { type: "range", id, min, max, step, value });
  const out = make("output", { for: id }, Number(value).toFixed(digits));
  input.addEventListener("input", () => {
    out.textContent = Number(input.value).toFixed(digits);
    onInput(Number(input.value));
  });
  return { row: make("div", { class: "sl-slider" }, make("label", { for: id }, label), input, out), input };
}

/** A toggle button: aria-pressed says its state; onChange(pressed). */
function toggle(label, pressed, onChange, aria = label) {
  const b = make("button", { type: "button", "aria-pressed": String(pressed), "aria-label": aria }, label);
  b.addEventListener("click", () => {
    const now = b.getAttribute("aria-pressed") !== "true";
    b.setAttribute("aria-pressed", String(now));
    onChange(now);
  });
  return b;
}

/** A canvas that keeps its pixels matched to its CSS size; draw() on resize. */
function sizedCanvas(aspect, label, draw) {
  const canvas = make("canvas", { role: "img", "aria-label": label });
  const fit = () => {
    const ratio = window.devicePixelRatio || 1, w = canvas.clientWidth || 300;
    const h = Math.round(w * aspect);
    canvas.style.height = `${h}px`;
    canvas.width = Math.round(w * ratio);
    canvas.height = Math.round(h * ratio);
    draw();
  };
  if (window.ResizeObserver) new ResizeObserver(fit).observe(canvas);
  requestAnimationFrame(fit);
  return canvas;
}

/** Run frame(seconds) on every animation frame while playing and on screen.
 * Returns {stats: {frames, seconds}, setPlaying(bool), playing()}. */
function animator(root, frame) {
  // a reader who asked for less motion starts paused (Play starts it)
  let playing = !window.matchMedia?.("(prefers-reduced-motion: reduce)").matches;
  let visible = true, running = false, last = null;
  const stats = { frames: 0, seconds: 0 };
  const tick = (now) => {
    if (!(playing && visible)) { running = false; last = null; return; }
    if (last !== null) {
      const elapsed = Math.min((now - last) / 1000, 0.1);
      frame(elapsed);
      stats.frames += 1;
      stats.seconds += elapsed;
    }
    last = now;
    requestAnimationFrame(tick);
  };
  const start = () => {
    if (playing && visible && !running) { running = true; requestAnimationFrame(tick); }
  };
  if (window.IntersectionObserver) {
    new IntersectionObserver((entries) => {
      visible = entries[entries.length - 1].isIntersecting;
      start();
    }).observe(root);
  }
  start();
  return { stats, playing: () => playing, setPlaying: (on) => { playing = on; start(); } };
}

/** Play/Pause for an animator: its label says what a press does. */
function playButton(anim) {
  const label = (on) => (on ? "Pause" : "Play");
  const b = toggle(label(anim.playing()), anim.playing(), (on) => { b.textContent = label(on); anim.setPlaying(on); }, "Play or pause");
  return b;
}

// ---- the page: drawing ---------------------------------------------------

const UP = "rgb(31,89,191)", DOWN = "rgb(140,140,140)", TORQUE = "rgb(255,127,14)";

/** One pendulum, large: rod, bob, the torque as an arc at the pivot. */
function drawPendulum(canvas, theta, torque, maxTorque) {
  const ctx = canvas.getContext("2d"), w = canvas.width, h = canvas.height;
  const cx = w / 2, cy = h / 2, r = 0.4 * Math.min(w, h);
  ctx.clearRect(0, 0, w, h);
  ctx.lineCap = "round";
  ctx.setLineDash([4, 4]);
  ctx.strokeStyle = "#ccc";
  ctx.lineWidth = 1;
  ctx.beginPath(); ctx.moveTo(cx, cy); ctx.lineTo(cx, cy - 1.15 * r); ctx.stroke();
  ctx.setLineDash([]);
  const up = Math.abs(wrapAngle(theta)) < UPRIGHT;
  const bx = cx + r * Math.sin(theta), by = cy - r * Math.cos(theta);
  ctx.strokeStyle = up ? UP : "#555";
  ctx.lineWidth = Math.max(3, r / 18);
  ctx.beginPath(); ctx.moveTo(cx, cy); ctx.lineTo(bx, by); ctx.stroke();
  ctx.fillStyle = "rgb(214,39,40)";
  ctx.beginPath(); ctx.arc(bx, by, Math.max(6, r / 10), 0, 2 * Math.PI); ctx.fill();
  if (maxTorque > 0 && torque !== 0) {
    const sweep = (Math.abs(torque) / maxTorque) * 0.75 * Math.PI, start = theta - Math.PI / 2;
    ctx.strokeStyle = TORQUE;
    ctx.lineWidth = Math.max(3, r / 25);
    ctx.beginPath();
    ctx.arc(cx, cy, r / 4, start, start + Math.sign(torque) * sweep, torque < 0);
    ctx.stroke();
  }
  ctx.fillStyle = "#333";
  ctx.beginPath(); ctx.arc(cx, cy, 4, 0, 2 * Math.PI); ctx.fill();
}

/** The unwrapped angle over the last seconds, with lines at multiples of pi. */
function drawAngle(canvas, times, angles, span) {
  const ctx = canvas.getContext("2d"), w = canvas.width, h = canvas.height;
  const ratio = window.devicePixelRatio || 1, pad = 34 * ratio;
  ctx.clearRect(0, 0, w, h);
  const t1 = times.length ? times[times.length - 1] : 0, t0 = Math.max(0, t1 - span);
  let lo = -Math.PI, hi = Math.PI;
  for (const a of angles) { lo = Math.min(lo, a); hi = Math.max(hi, a); }
  const x = (t) => pad + ((t - t0) / span) * (w - pad - 4), y = (a) => h - 4 - ((a - lo) / (hi - lo)) * (h - 8);
  ctx.font = `${11 * ratio}px system-ui,sans-serif`;
  ctx.lineWidth = 1;
  const k0 = Math.ceil(lo / Math.PI), k1 = Math.floor(hi / Math.PI), every = Math.max(1, Math.ceil((k1 - k0) / 6));
  for (let k = k0; k <= k1; k += 1) {
    if (k % every) continue;
    ctx.strokeStyle = k % 2 ? "#e2e2e2" : "#bbb";
    ctx.beginPath(); ctx.moveTo(pad, y(k * Math.PI)); ctx.lineTo(w, y(k * Math.PI)); ctx.stroke();
    ctx.fillStyle = "#666";
    const name = k === 0 ? "0" : k === 1 ? "π" : k === -1 ? "-π" : `${k}π`;
    ctx.fillText(name, 2, y(k * Math.PI) + 4 * ratio);
  }
  ctx.strokeStyle = "rgb(31,119,180)";
  ctx.lineWidth = 1.5 * ratio;
  ctx.beginPath();
  times.forEach((t, i) => (i ? ctx.lineTo(x(t), y(angles[i])) : ctx.moveTo(x(t), y(angles[i]))));
  ctx.stroke();
}

// ---- the views -----------------------------------------------------------

const PHYSICS_SLIDERS = {
  g: { label: "g [m/s²]", min: 0.5, max: 25, step: 0.1 },
  l: { label: "l [m]", min: 0.2, max: 3, step: 0.05 },
  m: { label: "m [kg]", min: 0.1, max: 5, step: 0.1 },
  max_torque: { label: "max torque [N m]", min: 0, max: 5, step: 0.1 },
  dt: { label: "dt [s]", min: 0.005, max: 0.2, step: 0.005, digits: 3 },
};
const HISTORY_SECONDS = 10;

/** One pendulum, large: the explorer (a constant torque, an angle plot) or a
 * trained policy (on or off) to push around. */
function pendulumView(root, cfg) {
  const policy = cfg.policy ? new Policy(cfg.policy) : null;
  const p = policy ? { ...policy.physics } : makeParams(cfg.preset || "point_mass", cfg.physics || {});
  const start = { theta: cfg.theta ?? Math.PI, thetaDot: cfg.theta_dot ?? 0 };
  const s = { theta: start.theta, thetaDot: start.thetaDot, torque: 0, time: 0, unwrapped: start.theta,
    upSince: null, usePolicy: !!policy, constTorque: cfg.torque ?? 0, dragging: null, carry: 0 };
  const times = [0], angles = [start.theta];
  const view = { params: p, state: s };

  const draw = () => {
    drawPendulum(pendulumCanvas, s.theta, s.torque, p.max_torque);
    if (plotCanvas) drawAngle(plotCanvas, times, angles, HISTORY_SECONDS);
  };
  const label = policy
    ? "The pendulum under the trained policy. Drag the bob, or press the left and right arrow keys, to push it."
    : "The pendulum. Drag the bob to move it; the left and right arrow keys push it.";
  const pendulumCanvas = sizedCanvas(cfg.plot ? 0.45 : 0.55, label, () => draw());
  pendulumCanvas.tabIndex = 0;
  const plotCanvas = cfg.plot ? sizedCanvas(0.28, "The angle over the last ten seconds, unwrapped: over the top it climbs by 2π.", () => draw()) : null;
  const status = make("div", { class: "sl-status", "aria-live": "off" });

  const record = () => {
    times.push(s.time);
    angles.push(s.unwrapped);
    while (times.length > 2 && times[0] < s.time - HISTORY_SECONDS) { times.shift(); angles.shift(); }
  };
  const advance = () => {
    const torque = s.usePolicy ? policy.torque(observe(s.theta, s.thetaDot), p.max_torque) : clip(s.constTorque, -p.max_torque, p.max_torque);
    const [theta, thetaDot] = step(s.theta, s.thetaDot, torque, p);
    s.unwrapped += wrapAngle(theta - s.theta);
    Object.assign(s, { theta, thetaDot, torque, time: s.time + p.dt });
    const up = Math.abs(theta) < UPRIGHT;
    s.upSince = up ? s.upSince ?? s.time : null;
    record();
  };
  const showStatus = () => {
    const deg = Math.round((wrapAngle(s.theta) * 180) / Math.PI);
    let text = `t = ${s.time.toFixed(1)} s · θ = ${deg}° · θ̇ = ${s.thetaDot.toFixed(1)} rad/s · torque ${s.torque.toFixed(2)} N m`;
    if (policy) text += s.upSince !== null ? ` · upright for ${(s.time - s.upSince).toFixed(1)} s` : " · not upright";
    status.textContent = text;
  };
  const anim = animator(root, (elapsed) => {
    if (s.dragging) {
      s.torque = 0;
    } else {
      s.carry += elapsed;
      for (let k = 0; s.carry >= p.dt && k < 40; k++) { s.carry -= p.dt; advance(); }
      s.carry = Math.min(s.carry, p.dt);
    }
    draw();
    showStatus();
  });
  view.stats = anim.stats;

  // pushes: drag the bob (mouse, pen or finger), or a key or button kicks it
  const kick = (sign) => { s.thetaDot = clip(s.thetaDot + sign * 3, -p.max_speed, p.max_speed); };
  const pointerAngle = (e) => {
    const r = pendulumCanvas.getBoundingClientRect();
    return Math.atan2(e.clientX - r.left - r.width / 2, r.top + r.height / 2 - e.clientY);
  };
  const setAngle = (theta) => {
    s.unwrapped += wrapAngle(theta - s.theta);
    s.theta = theta;
    draw();
  };
  pendulumCanvas.addEventListener("pointerdown", (e) => {
    s.dragging = { at: performance.now() / 1000, speed: 0 };
    pendulumCanvas.setPointerCapture?.(e.pointerId);
    pendulumCanvas.focus(); // so that the arrow keys push it next
    setAngle(pointerAngle(e));
    e.preventDefault();
  });
  pendulumCanvas.addEventListener("pointermove", (e) => {
    const d = s.dragging;
    if (!d) return;
    const theta = pointerAngle(e), now = performance.now() / 1000;
    // the speed of the hand, smoothed: it becomes the pendulum's on release
    d.speed = 0.5 * d.speed + (0.5 * wrapAngle(theta - s.theta)) / Math.max(now - d.at, 1 / 120);
    d.at = now;
    setAngle(theta);
  });
  const release = () => {
    const d = s.dragging;
    if (!d) return;
    const held = performance.now() / 1000 - d.at > 0.1; // a hand held still lets go at rest
    s.thetaDot = held ? 0 : clip(d.speed, -p.max_speed, p.max_speed);
    s.dragging = null;
    s.upSince = null;
  };
  pendulumCanvas.addEventListener("pointerup", release);
  pendulumCanvas.addEventListener("pointercancel", release);
  pendulumCanvas.addEventListener("keydown", (e) => {
    if (e.key === "ArrowLeft" || e.key === "ArrowRight") { kick(e.key === "ArrowLeft" ? -1 : 1); e.preventDefault(); }
  });

  const reset = () => {
    Object.assign(s, { theta: start.theta, thetaDot: start.thetaDot, torque: 0, time: 0, unwrapped: start.theta, upSince: null, carry: 0 });
    times.length = angles.length = 0;
    record();
    draw();
    showStatus();
  };
  const play = playButton(anim);
  const bar = make("div", { class: "sl-bar" }, play, make("button", { type: "button", onclick: reset }, "Reset"));
  if (policy) bar.append(toggle("Policy on", true, (on) => { s.usePolicy = on; }, "Policy on or off"));
  bar.append(
    make("button", { type: "button", "aria-label": "Push to the left", onclick: () => kick(-1) }, "◀ push"),
    make("button", { type: "button", "aria-label": "Push to the right", onclick: () => kick(1) }, "push ▶"),
  );

  const sliders = make("div", { class: "sl-sliders" });
  const controls = {};
  for (const name of cfg.sliders || Object.keys(PHYSICS_SLIDERS)) {
    if (name === "torque") {
      controls.torque = slider({ label: "torque [N m]", min: -5, max: 5, step: 0.05, value: s.constTorque, onInput: (v) => { s.constTorque = v; } });
    } else if (name === "theta0") {
      controls.theta0 = slider({ label: "θ₀ [rad] (reset)", min: -3.14, max: 3.14, step: 0.01, value: start.theta, onInput: (v) => { start.theta = v; reset(); } });
    } else if (name === "theta_dot0") {
      controls.theta_dot0 = slider({ label: "θ̇₀ [rad/s] (reset)", min: -8, max: 8, step: 0.1, value: start.thetaDot, digits: 1, onInput: (v) => { start.thetaDot = v; reset(); } });
    } else {
      const spec = PHYSICS_SLIDERS[name];
      controls[name] = slider({ ...spec, value: p[name], onInput: (v) => { p[name] = v; draw(); } });
    }
    sliders.append(controls[name].row);
  }
  root.append(pendulumCanvas, ...(plotCanvas ? [plotCanvas] : []), status, bar, sliders);
  Object.assign(view, { reset, kick, controls, animation: anim });
  showStatus();
  return view;
}

/** The squashed Gaussian: its density with and without the log-det correction. */
function squashedView(root, cfg) {
  const s = { mu: cfg.mean ?? 0, logStd: cfg.log_std ?? 0 };
  const status = make("div", { class: "sl-status" });
  const draw = () => {
    const ctx = canvas.getContext("2d"), w = canvas.width, h = canvas.height;
    const ratio = window.devicePixelRatio || 1, pad = 6 * ratio, bottom = 18 * ratio;
    const n = 600, xs = [], right = [], wrong = [];
    for (let k = 1; k < n; k++) {
      const a = -1 + (2 * k) / n;
      xs.push(a);
      right.push(squashedDensity(a, s.mu, s.logStd, true));
      wrong.push(squashedDensity(a, s.mu, s.logStd, false));
    }
    const top = Math.min(Math.max(...right, ...wrong, 0.5) * 1.1, 12);
    const x = (a) => pad + ((a + 1) / 2) * (w - 2 * pad), y = (d) => h - bottom - (Math.min(d, top) / top) * (h - bottom - pad);
    ctx.clearRect(0, 0, w, h);
    ctx.font = `${11 * ratio}px system-ui,sans-serif`;
    ctx.strokeStyle = "#999"; ctx.lineWidth = 1;
    ctx.beginPath(); ctx.moveTo(pad, h - bottom); ctx.lineTo(w - pad, h - bottom); ctx.stroke();
    ctx.fillStyle = "#555";
    for (const a of [-1, -0.5, 0, 0.5, 1]) ctx.fillText(String(a), x(a) - 6 * ratio, h - 4 * ratio);
    for (const [ys, color, dash] of [[wrong, "rgb(150,150,150)", [6, 4]], [right, "rgb(214,39,40)", []]]) {
      ctx.strokeStyle = color; ctx.lineWidth = 2 * ratio; ctx.setLineDash(dash.map((d) => d * ratio));
      ctx.beginPath();
      xs.forEach((a, i) => (i ? ctx.lineTo(x(a), y(ys[i])) : ctx.moveTo(x(a), y(ys[i]))));
      ctx.stroke();
    }
    ctx.setLineDash([]);
    const { entropy, area } = squashedStats(s.mu, s.logStd);
    status.textContent = `μ = ${s.mu.toFixed(2)}, log σ = ${s.logStd.toFixed(2)}: entropy ${entropy.toFixed(2)} nats; area under the uncorrected curve ${area.toFixed(2)} (a density needs 1)`;
  };
  const canvas = sizedCanvas(0.45, "The density of the squashed action a = tanh(u) on (-1, 1), with the log-det correction (solid) and without it (dashed).", draw);
  const controls = {
    mean: slider({ label: "μ", min: -3, max: 3, step: 0.05, value: s.mu, onInput: (v) => { s.mu = v; draw(); } }),
    log_std: slider({ label: "log σ", min: -3, max: 2, step: 0.05, value: s.logStd, onInput: (v) => { s.logStd = v; draw(); } }),
  };
  const key = (color, dash, text) => make("span", {}, make("span", { style: `color:${color}` }, dash), ` ${text}`);
  const legend = make("div", { class: "sl-bar" },
    key("rgb(214,39,40)", "━━", "π(a), with the correction"), key("#888", "╍╍", "N(atanh a; μ, σ), without it"));
  root.append(canvas, legend, status, make("div", { class: "sl-sliders" }, controls.mean.row, controls.log_std.row));
  return { controls, state: s, redraw: draw }; // it moves only when a slider does
}

/** Many pendulums in a square grid per policy, sorted so that the starts
 * nearest upright are in the top rows; upright rods are blue and counted. */
function gridView(root, cfg) {
  const policies = cfg.policies.map((d) => new Policy(d));
  const p = { ...policies[0].physics };
  const n = cfg.count || 1024, side = Math.ceil(Math.sqrt(n)), random = mulberry32(cfg.seed ?? 7);
  const starts = Array.from({ length: n }, () => [(2 * random() - 1) * Math.PI, (2 * random() - 1) * RESET_MAX_SPEED]);
  starts.sort((a, b) => Math.abs(a[0]) - Math.abs(b[0]));
  const stages = policies.map((policy, i) => ({
    policy, label: cfg.labels ? cfg.labels[i] : `policy ${i + 1}`,
    theta: new Float64Array(n), thetaDot: new Float64Array(n), upright: 0,
  }));
  const s = { time: 0, carry: 0 };
  const obs = [0, 0, 0];
  const count = (st) => { st.upright = 0; for (const th of st.theta) if (Math.abs(th) < UPRIGHT) st.upright += 1; };
  const restart = () => {
    for (const st of stages) {
      starts.forEach(([th, thd], i) => { st.theta[i] = th; st.thetaDot[i] = thd; });
      count(st);
    }
    s.time = 0;
    s.carry = 0;
  };
  const advance = () => {
    for (const st of stages) {
      for (let i = 0; i < n; i++) {
        obs[0] = Math.cos(st.theta[i]); obs[1] = Math.sin(st.theta[i]); obs[2] = st.thetaDot[i];
        const [th, thd] = step(st.theta[i], st.thetaDot[i], st.policy.torque(obs, p.max_torque), p);
        st.theta[i] = th; st.thetaDot[i] = thd;
      }
      count(st);
    }
    s.time += p.dt;
  };
  const drawStage = (st) => {
    const canvas = st.canvas, ctx = canvas.getContext("2d"), w = canvas.width, cell = w / side;
    ctx.clearRect(0, 0, w, canvas.height);
    ctx.lineCap = "round";
    for (const up of [false, true]) {
      ctx.strokeStyle = up ? UP : DOWN;
      ctx.lineWidth = Math.max(1, cell * (up ? 0.22 : 0.12));
      ctx.beginPath();
      for (let i = 0; i < n; i++) {
        const th = st.theta[i];
        if ((Math.abs(th) < UPRIGHT) !== up) continue;
        const cx = ((i % side) + 0.5) * cell, cy = (Math.floor(i / side) + 0.5) * cell, r = 0.42 * cell;
        ctx.moveTo(cx, cy);
        ctx.lineTo(cx + r * Math.sin(th), cy - r * Math.cos(th));
      }
      ctx.stroke();
    }
    st.caption.textContent = `${st.label}: ${st.upright} of ${n} upright`;
  };
  const status = make("div", { class: "sl-status" });
  const figures = stages.map((st) => {
    st.canvas = sizedCanvas(1, `${n} pendulums in a ${side} by ${side} grid under the policy ${st.label}; upright ones are blue.`, () => drawStage(st));
    st.caption = make("figcaption", {});
    return make("figure", {}, st.canvas, st.caption);
  });
  restart();
  const anim = animator(root, (elapsed) => {
    s.carry += elapsed;
    for (let k = 0; s.carry >= p.dt && k < 2; k++) { s.carry -= p.dt; advance(); }
    s.carry = Math.min(s.carry, p.dt);
    stages.forEach(drawStage);
    status.textContent = `t = ${s.time.toFixed(1)} s`;
  });
  const kickAll = () => {
    const r = mulberry32(Math.floor(s.time * 1000) + 1);
    for (const st of stages) for (let i = 0; i < n; i++) st.thetaDot[i] = clip(st.thetaDot[i] + 6 * (r() - 0.5), -p.max_speed, p.max_speed);
  };
  const play = playButton(anim);
  const bar = make("div", { class: "sl-bar" }, play,
    make("button", { type: "button", onclick: () => { restart(); stages.forEach(drawStage); } }, "Restart"),
    make("button", { type: "button", "aria-label": "Push every pendulum at random", onclick: kickAll }, "Push them all"), status);
  root.append(make("div", { class: "sl-grids" }, ...figures), bar);
  return { stats: anim.stats, stages, state: s, restart, kickAll, animation: anim, params: p };
}

const VIEWS = { explorer: pendulumView, policy: pendulumView, squashed: squashedView, grid: gridView };

/** Build the view that root's <script type="application/json"> describes, once. */
export function mount(root) {
  if (root.sacbookLive) return root.sacbookLive;
  addStyle(root.ownerDocument);
  const cfg = JSON.parse(root.querySelector("script[type='application/json']").textContent);
  const build = VIEWS[cfg.view];
  if (!build) throw new Error(`sacbook-live: unknown view ${cfg.view}`);
  for (const el of root.querySelectorAll(".sl-static")) el.remove(); // the no-script note
  root.sacbookLive = build(root, cfg);
  return root.sacbookLive;
}
