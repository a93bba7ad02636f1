"""What one training iteration costs, from the config alone: FLOPs and bytes.

A roofline sets two numbers of a program against two limits of a machine:
the arithmetic it does (FLOPs, against the machine's FLOP/s) and the memory
it must move (bytes, against its bandwidth). Both follow from the shapes in
a :class:`~sacbook.config.LoopConfig`, written here as N = ``num_envs``,
B = ``batch_size``, K = ``updates_per_iteration``, U = ``update_every``,
h_1..h_L the hidden widths, o = ``obs_dim`` (3), d = ``action_dim`` (1),
C = ``num_critics`` (2). Nothing is compiled or run.

Counting rules:

* A dense layer ``(rows, n_in) @ (n_in, n_out)`` costs ``2 rows n_in n_out``
  FLOPs (a multiply and an add a term), ``rows n_out`` for the bias and
  ``rows n_out`` for the activation (ReLU: one max).
* Its backward costs twice the matmul, ``2 rows n_in n_out`` for the weights'
  gradient and as much for the input's, plus ``rows n_out`` for the bias
  gradient (a sum over rows) and 2 an activation (ReLU: compare, select), but
  only for the gradients autodiff needs: none for the input of a network's
  first layer (data), none for the critics' weights in the actor's loss.
* Other elementwise arithmetic: one FLOP an operation, counted from the code
  (the tanh-Gaussian's few lines: :data:`HEAD`, :data:`SAMPLE`,
  :data:`LOG_PROB`, :data:`TAIL_BACKWARD`; the pendulum: :data:`ENV_STEP`).
* Transcendentals (exp, log, tanh, sqrt, the logistic) are counted apart, in
  ``transcendentals``, not in FLOPs, as XLA's cost analysis does: on a CPU one
  is a polynomial of tens of FLOPs, on a GPU one instruction of its special
  function units, so no single exchange rate is right.
* Random numbers: JAX's threefry2x32 runs 20 rounds of add, rotate and xor on
  pairs of 32-bit words. Those integer operations are counted as FLOPs, as XLA
  counts them (:data:`RANDOM`): they occupy the same vector units.
* Bytes are compulsory traffic, a lower bound: what must cross the memory
  bus at least once, float32 (4 bytes) and bool (1 byte). Activations and
  gradients are assumed to stay in cache (true at B x h = 96 x 64; at
  B x h in the thousands they do not, and the real traffic is larger).
* Steady state: learning has started (no warm-up branch), and every U-th
  iteration runs K updates, so an iteration runs K / U updates on average.

Checked against XLA's own count of the compiled programs in
``tests/test_cost.py`` (within 10% for one update and for a chunk).
"""

from __future__ import annotations

import dataclasses

from sacbook.config import LoopConfig
from sacbook.sac import SACConfig

FLOAT = 4  # bytes of a float32
BOOL = 1

# (FLOPs, transcendentals) per element, forward and backward, of each hidden
# activation. ReLU: max; compare and select. The others: the arithmetic
# around their exp/tanh/logistic.
ACTIVATION = {
    "relu": ((1, 0), (2, 0)),
    "tanh": ((0, 1), (3, 0)),
    "swish": ((1, 1), (4, 0)),
    "elu": ((2, 1), (3, 1)),
}
# (FLOPs, transcendentals) per action component:
HEAD = (3, 1)  # log_std = MIN + (MAX - MIN) (tanh(raw) + 1) / 2
SAMPLE = (2, 2)  # u = mean + exp(log_std) eps, a = tanh(u)
LOG_PROB = (21, 3)  # Gaussian log-density 8 + 1 exp, tanh correction 13 + 2
TAIL_BACKWARD = (40, 1)  # head, sample and log-density, backward
# FLOPs of threefry2x32 and the conversions after it, per number drawn:
RANDOM = {"uniform": 50, "normal": 90, "randint": 96, "key": 44}
# FLOPs per environment and step (pendulum.env_step and the loop's
# bookkeeping). The reward wraps the angle (17: floor, two corrections,
# clip) and squares (10); the step clips (4), takes the sine (wrap 17,
# fold 6, a degree-11 polynomial 12) and integrates (9) and wraps (17);
# observe takes sine and cosine (50); time, return and done 9; the replay
# row index 2; the chunk's reward and return sums 4.
ENV_STEP = 157
# When episodes end (every episode_length-th step, all envs at once, as
# they start together): two uniform numbers per env and observe again.
ENV_RESET = 2 * RANDOM["uniform"] + 50 + 4


def transition_bytes(config: SACConfig) -> int:
    """One replay row: obs, action, reward, next_obs (float32), terminated,
    truncated (bool): ``4 (2 o + d + 1) + 2`` = 34 bytes for the pendulum."""
    return FLOAT * (2 * config.obs_dim + config.action_dim + 1) + 2 * BOOL


def _layers(n_in: int, hidden: tuple[int, ...], n_out: int):
    """``(n_in, n_out)`` of each dense layer of an MLP."""
    widths = (n_in, *hidden, n_out)
    return tuple(zip(widths[:-1], widths[1:]))


def actor_layers(config: SACConfig):
    """The actor's dense layers: ``o -> h_1 -> ... -> h_L -> 2 d``."""
    return _layers(config.obs_dim, config.hidden_sizes, 2 * config.action_dim)


def critic_layers(config: SACConfig):
    """One critic's dense layers: ``o + d -> h_1 -> ... -> h_L -> 1``."""
    return _layers(config.obs_dim + config.action_dim, config.hidden_sizes, 1)


def param_count(layers) -> int:
    """Weights and biases of dense ``layers``: ``sum n_in n_out + n_out``."""
    return sum(a * b + b for a, b in layers)


def forward(rows: int, layers, activation: str = "relu") -> tuple[int, int]:
    """``(FLOPs, transcendentals)`` of an MLP on ``(rows, n_in)``:
    ``rows sum (2 n_in n_out + n_out)`` plus the hidden activations."""
    (act, act_t), _ = ACTIVATION[activation]
    hidden = sum(b for _, b in layers[:-1])
    flops = rows * (sum(2 * a * b + b for a, b in layers) + act * hidden)
    return flops, rows * act_t * hidden


def backward(
    rows: int, layers, activation: str = "relu", *, weights=True, inputs=False
) -> tuple[int, int]:
    """``(FLOPs, transcendentals)`` of an MLP's backward on ``rows`` rows.

    ``weights``: the gradients of weights, ``2 rows n_in n_out``, and of
    biases, ``rows n_out`` (a sum over rows), every layer. Input gradients,
    ``2 rows n_in n_out``, every layer but the first, whose input is data,
    unless ``inputs`` (the actor's loss differentiates the critics by the
    action). Activations: ``rows h`` times their backward cost.
    """
    _, (act, act_t) = ACTIVATION[activation]
    hidden = sum(b for _, b in layers[:-1])
    flops = act * hidden
    if weights:
        flops += sum(2 * a * b + b for a, b in layers)
    flops += sum(2 * a * b for a, b in (layers if inputs else layers[1:]))
    return rows * flops, rows * act_t * hidden


def _add(*counts: tuple[int, int]) -> tuple[int, int]:
    return sum(c[0] for c in counts), sum(c[1] for c in counts)


def _times(k: int, count: tuple[int, int]) -> tuple[int, int]:
    return k * count[0], k * count[1]


@dataclasses.dataclass(frozen=True)
class UpdateCost:
    """FLOPs of one :func:`sacbook.sac.update` on a batch of B, by part.

    In FLOPs; ``A(r)``/``Q(r)`` a forward of the actor/one critic on ``r``
    rows, ``A'``/``Q'`` a backward, see :func:`forward`, :func:`backward`.

    Attributes:
      critic_target: ``A(B)`` on next_obs ``(B, o)``, the action sampled
        with its log-density ``(B, d)``, ``C Q(B)`` with the target critics
        on ``(B, o + d)``, the minimum over C and the soft TD target ``(B,)``.
      critic_loss: ``C Q(B)`` on ``(B, o + d)``, the squared error
        ``(C, B)``, and ``C Q'(B)`` for the weights.
      actor: ``A(B)`` on obs, the sample and log-density, ``C Q(B)`` with
        the updated critics, then backward: ``C Q'(B)`` for the action
        alone, the tanh-Gaussian's, ``A'(B)`` for the actor's weights.
      temperature: ``mean(log_prob + target)`` and the entropy metric, ``(B,)``.
      adam: 12 FLOPs a parameter (two moments, bias corrections, the step
        ``-lr m / (sqrt(v) + eps)``, applying it), for the actor's P_a,
        the critics' P_c and the temperature; plus the metrics' gradient
        norms, 2 a parameter.
      polyak: ``target + tau (online - target)``: 3 a critic parameter.
      random: the update's key split (2 keys) and its two normal draws of
        ``(B, d)`` (for next_obs and obs).
      transcendentals: all of the update's, counted apart (not in FLOPs).
      state_bytes: the learned state read and written once: actor
        parameters and Adam's two moments (3 P_a), critics, targets and
        moments (4 P_c), the temperature's (3), float32, times 2.
    """

    critic_target: int
    critic_loss: int
    actor: int
    temperature: int
    adam: int
    polyak: int
    random: int
    transcendentals: int
    state_bytes: int

    @property
    def flops(self) -> int:
        """The update's FLOPs, all parts (transcendentals apart)."""
        return (
            self.critic_target
            + self.critic_loss
            + self.actor
            + self.temperature
            + self.adam
            + self.polyak
            + self.random
        )


def update_cost(config: SACConfig) -> UpdateCost:
    """The cost of one SAC update with ``config``'s networks and batch size."""
    b, d, c, act = (
        config.batch_size,
        config.action_dim,
        config.num_critics,
        config.activation,
    )
    actor, critic = actor_layers(config), critic_layers(config)
    p_actor, p_critic = param_count(actor), c * param_count(critic)
    tail = _times(b * d, _add(HEAD, SAMPLE, LOG_PROB))  # head, sample, density
    q_forward = _times(c, forward(b, critic, act))
    normals = _times(b * d, (RANDOM["normal"], 2))  # counts 2 (log, sqrt) apart
    target = _add(
        forward(b, actor, act),
        tail,
        q_forward,
        (b * (c - 1) + 7 * b, 1),  # min over C; r + gamma (1 - t)(q - alpha lp)
    )
    loss = _add(
        q_forward,
        (4 * c * b, 0),  # (q - y)^2, its mean, and the q_mean metric
        (2 * c * b, 0),  # its backward
        _times(c, backward(b, critic, act)),
    )
    actor_part = _add(
        forward(b, actor, act),
        tail,
        q_forward,
        (b * (c - 1) + 3 * b, 1),  # min; alpha log_prob - q, mean
        (2 * c * b, 0),  # backward of the mean and the min
        _times(c, backward(b, critic, act, weights=False, inputs=True)),
        _times(b * d, TAIL_BACKWARD),
        backward(b, actor, act),
    )
    n_params = p_actor + p_critic + 1
    adam = (12 * n_params + 2 * (p_actor + p_critic), n_params + 6)  # sqrt; norms
    transcendentals = _add(target, loss, actor_part, adam, (0, 2 * normals[1]))[1]
    return UpdateCost(
        critic_target=target[0],
        critic_loss=loss[0],
        actor=actor_part[0],
        temperature=3 * b,
        adam=adam[0],
        polyak=3 * p_critic,
        random=2 * normals[0] + 2 * RANDOM["key"],
        transcendentals=transcendentals,
        state_bytes=2 * FLOAT * (3 * p_actor + 4 * p_critic + 3),
    )


@dataclasses.dataclass(frozen=True)
class IterationCost:
    """FLOPs and bytes of one training iteration (:func:`sacbook.loop.iteration`)
    and of a chunk of them, in steady state.

    Attributes:
      num_envs, batch_size: N and B.
      updates: updates per iteration on average, ``K / U``.
      chunk_iterations: iterations in a compiled chunk.
      env_step: ``N`` pendulum steps, :data:`ENV_STEP` FLOPs each, and the
        resets (:data:`ENV_RESET` per env, every ``episode_length`` steps).
      act: the actor on the N observations ``(N, o)``, its head and sample
        (a normal draw ``(N, d)``), the torque ``(N,)``.
      update: one update's :class:`UpdateCost`.
      sample: per update, drawing the batch's row indices (``randint``
        ``(B,)``) and two keys; the gather itself is no arithmetic.
      env_bytes: the env state (theta, theta_dot, time, return: 16 bytes
        an env) and the observation ``(N, o)`` read and written, the actor
        read once for acting.
      replay_write_bytes: N rows of :func:`transition_bytes` written.
      gather_bytes: per update, B rows of :func:`transition_bytes` read.
    """

    num_envs: int
    batch_size: int
    updates: float
    chunk_iterations: int
    env_step: float
    act: int
    update: UpdateCost
    sample: int
    env_bytes: int
    replay_write_bytes: int
    gather_bytes: int

    @property
    def update_flops(self) -> int:
        """FLOPs of one update and the sampling of its batch."""
        return self.update.flops + self.sample

    @property
    def update_bytes(self) -> int:
        """Bytes of one update: the learned state in and out, the batch in."""
        return self.update.state_bytes + self.gather_bytes

    @property
    def flops(self) -> float:
        """FLOPs of one iteration: env step, acting, ``K / U`` updates."""
        return self.env_step + self.act + self.updates * self.update_flops

    @property
    def bytes(self) -> float:
        """Bytes one iteration must move at least."""
        return (
            self.env_bytes + self.replay_write_bytes + self.updates * self.update_bytes
        )

    @property
    def chunk_flops(self) -> float:
        """FLOPs of a chunk: ``chunk_iterations`` iterations."""
        return self.chunk_iterations * self.flops

    @property
    def chunk_bytes(self) -> float:
        return self.chunk_iterations * self.bytes

    @property
    def intensity(self) -> float:
        """Arithmetic intensity, FLOPs per byte of one iteration: above the
        machine's balance (its FLOP/s over its bytes/s) a program is limited
        by arithmetic, below it by memory."""
        return self.flops / self.bytes


def iteration_cost(config: LoopConfig) -> IterationCost:
    """The cost of one iteration of ``config``'s training loop (a
    :class:`~sacbook.config.LoopConfig` or :class:`~sacbook.config.TrainConfig`).
    """
    if not isinstance(config, LoopConfig):
        raise ValueError(
            f"iteration_cost needs a LoopConfig or TrainConfig, "
            f"got {type(config).__name__}"
        )
    sac, n = config.sac, config.num_envs
    d, act = sac.action_dim, sac.activation
    actor = actor_layers(sac)
    acting = forward(n, actor, act)[0] + n * d * (
        HEAD[0] + SAMPLE[0] + RANDOM["normal"]
    )
    row = transition_bytes(sac)
    return IterationCost(
        num_envs=n,
        batch_size=sac.batch_size,
        updates=config.updates_per_iteration / config.update_every,
        chunk_iterations=config.chunk_iterations,
        env_step=n * (ENV_STEP + ENV_RESET / config.env.episode_length),
        act=acting + n,  # and the torque, max_torque * action
        update=update_cost(sac),
        sample=sac.batch_size * RANDOM["randint"] + 3 * RANDOM["key"],
        env_bytes=2 * n * (16 + FLOAT * sac.obs_dim) + FLOAT * param_count(actor),
        replay_write_bytes=n * row,
        gather_bytes=sac.batch_size * row,
    )
