"""The device a run uses: is it an accelerator, how much memory it has, and
whether a run fits.

A run too large for its device used to allocate for minutes and then be
killed by the operating system without a word. :func:`check_fits` compares an
estimate of the bytes a run needs (:func:`estimate_train_bytes`) with the
memory available (:func:`available_bytes`) and raises
:class:`RunTooLargeError`, with one line naming the options to lower, before
anything is allocated. :func:`sacbook.train.train` and its kin call it
before they build a state (skip it with ``check_memory=False``), and so
does ``sacbook train``.

The estimate is computed from shapes (:func:`sacbook.loop.abstract_state`)
and a count of what the compiled chunk holds besides the state: it takes
milliseconds and allocates nothing of size N or capacity, so even
``num_envs=10**12`` is answered at once.
"""

from __future__ import annotations

import math
import os

import jax
import numpy as np

from sacbook import cost, loop, sac
from sacbook.config import LoopConfig

# A run may use at most this fraction of the memory available: the estimate
# leaves out the compiler, the Python process and whatever else starts meanwhile.
SAFETY_FRACTION = 0.9

# Margin on the counted working memory of one chunk. On a 2-core CPU, XLA's
# own figure (``Compiled.memory_analysis().temp_size_in_bytes``) came to
# 0.4-0.8 of the count before this margin, for N from 16 to 65536 and hidden
# widths from 16 to 2048; the margin covers backends that keep more alive.
WORKING_MARGIN = 1.25

# Cgroup memory limits at or above this mean "no limit".
_NO_LIMIT = 1 << 60


def _resolve(device=None):
    return jax.devices()[0] if device is None else device


def is_accelerator(device=None) -> bool:
    """Whether ``device`` (default: the first JAX device) is an accelerator:
    any backend but the CPU (a GPU, a TPU, ...)."""
    return _resolve(device).platform != "cpu"


def available_bytes(device=None) -> tuple[int | None, str]:
    """Memory available to a run on ``device`` (default: the first JAX device),
    in bytes, and where the figure comes from.

    A device that reports ``memory_stats()`` with a ``bytes_limit`` (GPUs,
    TPUs) gives ``bytes_limit - bytes_in_use``. Otherwise the run lives in host
    RAM: ``MemAvailable`` from ``/proc/meminfo`` on Linux (capped by the
    container's cgroup memory limit, if any), else ``os.sysconf`` pages.
    Returns ``(None, "unknown")`` where no figure can be had.
    """
    device = _resolve(device)
    try:
        stats = device.memory_stats()
    except Exception:  # backends without memory statistics raise various errors
        stats = None
    if stats and "bytes_limit" in stats:
        free = int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))
        return max(free, 0), "memory_stats: bytes_limit - bytes_in_use"
    return host_available_bytes()


def host_available_bytes() -> tuple[int | None, str]:
    """Host RAM available now, in bytes, and where the figure comes from
    (see :func:`available_bytes`)."""
    available, source = _meminfo_available(), "host RAM: MemAvailable"
    if available is None:
        available, source = _sysconf_available()
    limit = _cgroup_limit()
    if limit is not None and (available is None or limit < available):
        available, source = limit, "host RAM: cgroup memory limit"
    return available, source


def _meminfo_available() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024  # the file says kB and means KiB
    except (OSError, ValueError, IndexError):
        pass
    return None


def _sysconf_available() -> tuple[int | None, str]:
    # free pages where the system reports them, else all physical pages
    for name, source in (
        ("SC_AVPHYS_PAGES", "host RAM: sysconf free pages"),
        ("SC_PHYS_PAGES", "host RAM: sysconf total pages"),
    ):
        try:
            pages, page_size = os.sysconf(name), os.sysconf("SC_PAGE_SIZE")
        except (AttributeError, ValueError, OSError):
            continue
        if pages > 0 and page_size > 0:
            return pages * page_size, source
    return None, "unknown"


def _cgroup_limit() -> int | None:
    """The memory limit of this container (cgroup v2, else v1), or None.

    The limit alone, not the limit minus usage: the usage counts page cache
    that the kernel would reclaim for the run.
    """
    for path in (
        "/sys/fs/cgroup/memory.max",
        "/sys/fs/cgroup/memory/memory.limit_in_bytes",
    ):
        try:
            with open(path) as f:
                text = f.read().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < _NO_LIMIT:
            return int(text)
    return None


def tree_bytes(tree) -> int:
    """Bytes of all leaves of ``tree`` (arrays or ``jax.ShapeDtypeStruct``)."""
    return sum(math.prod(np.shape(x)) * x.dtype.itemsize for x in jax.tree.leaves(tree))


def estimate_train_bytes(config: LoopConfig, device=None) -> dict:
    """The bytes a training run with ``config`` needs, by part.

    Computed from the shapes of :func:`sacbook.loop.abstract_state` and a
    count of the chunk's working memory: milliseconds, and nothing of size N
    or capacity is allocated.

    Returns a dict of ints (bytes):

    * ``replay_buffer``: the buffer's arrays, ``(buffer_capacity, ...)``.
    * ``environments``: the N env states and observations, ``(N, ...)``.
    * ``networks``: actor, critics, target critics, optimizer states,
      temperature, PRNG key and counters.
    * ``state``: the sum of the three: exactly the training state's bytes.
    * ``chunk_envs``, ``chunk_updates``, ``chunk_metrics``: what one compiled
      chunk holds besides the (donated) state, before ``WORKING_MARGIN``; see
      below.
    * ``evaluation``: what an evaluation of ``eval_envs`` episodes holds
      (after a chunk, not beside it).
    * ``working``: the larger of the chunk's sum and the evaluation, times
      ``WORKING_MARGIN``.
    * ``host_copy``: what :func:`sacbook.loop.init` builds on the host with
      NumPy and still holds while it copies the state to ``device``.
    * ``total``: what the memory of ``device`` (default: the first JAX device)
      must hold: ``state + working``, plus ``host_copy`` where that memory is
      host RAM (the CPU backend).
    """
    _check_networks_drawable(config.sac)
    state = loop.abstract_state(config)
    replay_buffer = tree_bytes(state.buffer)
    environments = tree_bytes((state.env, state.obs))
    state_bytes = tree_bytes(state)
    networks = state_bytes - replay_buffer - environments

    n, b, k = config.num_envs, config.sac.batch_size, config.updates_per_iteration
    transition = tree_bytes(state.buffer.data) // config.buffer_capacity  # one row
    env_row = environments // n
    action = 4 * config.sac.action_dim  # float32
    width = 4 * sum(config.sac.hidden_sizes)  # a row's activations through a network
    params = tree_bytes((state.sac.actor_params, state.sac.critic_params))

    # Per env, each iteration: the policy's forward pass at the hidden width;
    # its mean, log-std, noise, pre-tanh sample and action, the warm-up's random
    # action and the torque (7 action-sized arrays); the N transitions and their
    # cast copies for the buffer's scatter; the new env states and observations
    # (the scan holds old and new); random bits for actions and resets, row indices.
    chunk_envs = n * (width + 7 * action + 2 * transition + env_row + 24)
    # The update round: K batches of B transitions; one update's activations
    # (actor twice, each critic three times: online with gradients, target, in
    # the actor loss); gradients and Adam's new moments (3x the parameters).
    passes = 2 + 3 * config.sac.num_critics
    chunk_updates = k * b * transition + b * (passes * width + transition) + 3 * params
    # Per-iteration metrics of the chunk (float32 each), inside the scan and out.
    chunk_metrics = 2 * config.chunk_iterations * 4 * (len(sac.METRIC_NAMES) + 4)
    # The evaluation after each chunk (not beside it): its episodes' states,
    # returns, and each step's pass through the actor.
    evaluation = getattr(config, "eval_envs", 0) * (width + 7 * action + env_row + 8)
    chunk = chunk_envs + chunk_updates + chunk_metrics
    working = math.ceil(WORKING_MARGIN * max(chunk, evaluation))

    # loop.init draws the state with NumPy, then device_put copies it, so on
    # the host both exist for a moment. The buffer's np.zeros pages are never
    # written, so the OS never backs them (measured: a 3.4 GB buffer raised the
    # peak RSS by 3.4 GB, not 6.8); the rest is counted once more.
    host_copy = state_bytes - tree_bytes(state.buffer.data)
    in_host_ram = not is_accelerator(device)
    return {
        "replay_buffer": replay_buffer,
        "environments": environments,
        "networks": networks,
        "state": state_bytes,
        "chunk_envs": chunk_envs,
        "chunk_updates": chunk_updates,
        "chunk_metrics": chunk_metrics,
        "evaluation": evaluation,
        "working": working,
        "host_copy": host_copy,
        "total": state_bytes + working + (host_copy if in_host_ram else 0),
    }


def _check_networks_drawable(config) -> None:
    """One line, before :func:`sacbook.loop.abstract_state` draws the
    networks on the host at full size, where they could not fit there: the
    actor and its Adam moments, the critics, their targets and moments."""
    actor = cost.param_count(cost.actor_layers(config))
    critics = config.num_critics * cost.param_count(cost.critic_layers(config))
    need = 4 * (3 * actor + 4 * critics)  # float32
    available, source = host_available_bytes()
    if available is not None and need > SAFETY_FRACTION * available:
        raise ValueError(
            f"SACConfig.hidden_sizes {config.hidden_sizes} with num_critics "
            f"{config.num_critics}: the networks alone need {format_bytes(need)}, "
            f"but the host has {format_bytes(available)} available ({source})"
        )


def format_bytes(n: float) -> str:
    """``n`` bytes in decimal units, two significant figures: ``"2.1 TB"``."""
    units = (("PB", 1e15), ("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3))
    for unit, size in units:
        if n >= size:
            value = n / size
            return f"{value:.1f} {unit}" if value < 10 else f"{value:.0f} {unit}"
    return f"{int(n)} B"


class RunTooLargeError(ValueError):
    """A run needs more memory than its device has. ``str()`` is one line
    naming the ``TrainConfig`` fields to lower; :meth:`describe` spells them
    as another interface does (the command line's options).

    Attributes:
      config: the ``TrainConfig``.
      estimate: :func:`estimate_train_bytes`'s dict.
      part: the estimate's entry that does not fit: ``"total"``, or
        ``"host_copy"`` when an accelerator's host is short of RAM.
      needed: ``estimate[part]``.
      available, source: :func:`available_bytes`'s answer.
      where: the memory that is short, e.g. ``"the cpu"``.
      options: the fields to lower, largest share first.
    """

    def __init__(
        self,
        config,
        estimate: dict,
        available: int,
        source: str,
        where: str,
        fraction: float = SAFETY_FRACTION,
        part: str = "total",
    ):
        self.config, self.estimate, self.needed = config, estimate, estimate[part]
        self.available, self.source, self.where = available, source, where
        self.fraction, self.part = fraction, part
        self.options = _options_to_lower(config, estimate)
        super().__init__(self.describe())

    def describe(self, names: dict | None = None, subject: str = "TrainConfig") -> str:
        """The one-line message, with fields spelled by ``names`` (field ->
        name; a name starting with ``--`` is written ``--name value``)."""
        names = names or {}

        def at(field):
            name = names.get(field, field)
            value = _field(self.config, field)
            return f"{name} {value}" if name.startswith("--") else f"{name}={value}"

        e = self.estimate
        fb = format_bytes
        parts = [
            f"replay buffer {fb(e['replay_buffer'])} at {at('buffer_capacity')}",
            f"environments {fb(e['environments'])} at {at('num_envs')}",
            f"networks {fb(e['networks'])}",
        ]
        if self.part == "total":
            chunk = e.get("evaluation", 0) <= _chunk_bytes(e)
            what = "one chunk's" if chunk else "the evaluation's"
            parts.append(f"{what} working memory {fb(e['working'])}")
        if self.part == "host_copy" or e["total"] > e["state"] + e["working"]:
            parts.append(f"host copy while starting {fb(e['host_copy'])}")
        lower = " or ".join(
            f"{names.get(f, f)} (now {_field(self.config, f)})" for f in self.options
        )
        return (
            f"{subject} needs about {fb(self.needed)} ({', '.join(parts)}) but "
            f"{self.where} has {fb(self.available)} available ({self.source}) "
            f"and a run may use {self.fraction:.0%} of it; lower {lower}"
        )


def _field(config, field: str):
    value = config
    for part in field.split("."):
        value = getattr(value, part)
    return value


def _chunk_bytes(estimate: dict) -> int:
    """What one chunk holds besides the state, before the margin."""
    return sum(estimate[k] for k in ("chunk_envs", "chunk_updates", "chunk_metrics"))


def _options_to_lower(config, estimate: dict) -> list[str]:
    """num_envs and buffer_capacity (they size the big arrays), plus the batch
    size, the hidden widths or the evaluation's episodes where they drive a
    tenth of the total or more; largest share first."""
    shares = {
        "num_envs": estimate["environments"] + WORKING_MARGIN * estimate["chunk_envs"],
        "buffer_capacity": estimate["replay_buffer"],
        "sac.batch_size": WORKING_MARGIN * estimate["chunk_updates"],
        "sac.hidden_sizes": estimate["networks"],
        # the evaluation counts where it outgrows the chunk's working memory
        "eval_envs": WORKING_MARGIN
        * max(0, estimate.get("evaluation", 0) - _chunk_bytes(estimate)),
    }
    total = max(estimate["total"], 1)
    always = ("num_envs", "buffer_capacity")
    keep = [f for f in shares if f in always or shares[f] >= 0.1 * total]
    return sorted(keep, key=lambda f: -shares[f])


def scale_estimate(estimate: dict, runs: int = 1, devices: int = 1) -> dict:
    """:func:`estimate_train_bytes` for ``runs`` runs trained together (seeds
    or a sweep), sharded over ``devices`` accelerators: what each device
    holds. The buffer, the environments and their working memory split over
    the devices; the networks and the update's working memory do not (each
    device holds the networks and its share of the batch). Virtual CPU
    devices share one host RAM, so pass ``devices=1`` for them."""
    split = ("replay_buffer", "environments", "chunk_envs")
    scaled = {
        name: math.ceil(value * runs / (devices if name in split else 1))
        for name, value in estimate.items()
    }
    working = max(_chunk_bytes(scaled), scaled.get("evaluation", 0))
    scaled["working"] = math.ceil(WORKING_MARGIN * working)
    scaled["state"] = sum(scaled[n] for n in ("replay_buffer", "environments"))
    scaled["state"] += scaled["networks"]
    on_host = estimate["total"] > estimate["state"] + estimate["working"]
    scaled["total"] = scaled["state"] + scaled["working"]
    scaled["total"] += scaled["host_copy"] if on_host else 0
    return scaled


def check_fits(
    config: LoopConfig,
    device=None,
    *,
    fraction: float = SAFETY_FRACTION,
    runs: int = 1,
    devices: int = 1,
) -> dict:
    """Raise :class:`RunTooLargeError` if a run with ``config`` needs more than
    ``fraction`` of the memory available on ``device`` (default: the first JAX
    device); on an accelerator, also if the host copy that
    :func:`sacbook.loop.init` builds needs more than that of host RAM.
    ``runs`` and ``devices``: see :func:`scale_estimate` (on a CPU the
    devices share the host's RAM, and ``devices`` is ignored).
    Returns the estimate. Passes silently where no memory figure exists.
    """
    device = _resolve(device)
    estimate = estimate_train_bytes(config, device)
    if runs != 1 or devices != 1:
        shards = devices if is_accelerator(device) else 1
        estimate = scale_estimate(estimate, runs, shards)
    available, source = available_bytes(device)
    where = f"the {device.platform}"
    if is_accelerator(device):
        where += f" ({getattr(device, 'device_kind', device)})"
    if available is not None and estimate["total"] > fraction * available:
        raise RunTooLargeError(config, estimate, available, source, where, fraction)
    if is_accelerator(device):
        host, host_source = host_available_bytes()
        if host is not None and estimate["host_copy"] > fraction * host:
            raise RunTooLargeError(
                config,
                estimate,
                host,
                host_source,
                "the host",
                fraction,
                part="host_copy",
            )
    return estimate
