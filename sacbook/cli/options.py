"""The options of ``sacbook train`` that shape a run, in one table.

Each :class:`Option` is declared once, in :data:`OPTIONS`: its flag, type
and help, the config field it sets, and whether ``--resume`` must match the
checkpoint. Everything else reads the table: the argparse options
(:func:`add_arguments`), the config they ask for (:func:`train_config`), the
resume check (:func:`check_resume`), and the wording of errors, which spell
config fields as these options (:func:`as_options`, :func:`check_run`).
"""

from __future__ import annotations

import argparse
import dataclasses
import re
from collections.abc import Callable

from sacbook import checks, device, loop
from sacbook.cli.args import CliError, positive_int, seed_number
from sacbook.config import TrainConfig
from sacbook.pendulum import PRESETS, PendulumParams


@dataclasses.dataclass(frozen=True)
class Option:
    """One option of ``sacbook train``.

    Attributes:
      flag: the option as typed, e.g. ``"--batch-size"``.
      type: turns the text into a value (an argparse ``type``).
      help: argparse's help text.
      field: the :class:`~sacbook.config.TrainConfig` field it sets, dotted
        for a nested one (``"sac.batch_size"``); None for an option that is
        no config field (the seed).
      convert: turns the value into the field's (a preset name into its
        ``PendulumParams``); None: the value is the field's. Errors spell only
        fields set as they are typed as their options.
      must_match: ``--resume`` continues the checkpoint's run, so the option
        may only repeat what the checkpoint holds.
      choices: argparse's ``choices``, if any.
    """

    flag: str
    type: Callable
    help: str
    field: str | None
    convert: Callable | None = None
    must_match: bool = True
    choices: tuple | None = None

    @property
    def dest(self) -> str:
        """The attribute of argparse's namespace: ``"batch_size"``."""
        return self.flag.removeprefix("--").replace("-", "_")

    @property
    def spelled(self) -> bool:
        """Whether errors about its field may name the option instead."""
        return self.field is not None and self.convert is None

    def value(self, asked):
        """The field's value for the option's value ``asked``."""
        return asked if self.convert is None else self.convert(asked)

    def saved(self, config: TrainConfig, seed: int):
        """The value a run with ``config`` and ``seed`` holds for the field."""
        return seed if self.field is None else _field(config, self.field)


# Options that are None unless given; --resume keeps the checkpoint's values.
OPTIONS = (
    Option(
        "--preset",
        str,
        "physics preset (default gymnasium)",
        "env",
        convert=PendulumParams.preset,
        choices=PRESETS,
    ),
    Option(
        "--num-envs", positive_int, "parallel environments (default 1024)", "num_envs"
    ),
    Option(
        "--total-env-steps",
        positive_int,
        "training length in env steps, all envs together, rounded up to whole "
        "chunks (a chunk: 20 iterations, each stepping every env once)",
        "total_env_steps",
        must_match=False,
    ),
    Option(
        "--batch-size",
        positive_int,
        "transitions per gradient step",
        "sac.batch_size",
    ),
    Option(
        "--buffer-capacity",
        positive_int,
        "replay buffer capacity in transitions",
        "buffer_capacity",
    ),
    Option(
        "--updates-per-iteration",
        positive_int,
        "gradient updates per env step of all envs",
        "updates_per_iteration",
    ),
    Option("--seed", seed_number, "PRNG seed (default 0)", None),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add every option of :data:`OPTIONS` to ``parser`` (default None)."""
    for option in OPTIONS:
        extra = {} if option.choices is None else {"choices": option.choices}
        parser.add_argument(option.flag, type=option.type, help=option.help, **extra)


def option_names() -> dict[str, str]:
    """Config field -> option, for the fields errors may spell as options."""
    return {o.field: o.flag for o in OPTIONS if o.spelled}


def as_options(message: str) -> str:
    """A config's error message with its field names spelled as options:
    ``TrainConfig.num_envs``, ``SACConfig.batch_size`` or ``sac.batch_size``
    become ``--num-envs`` and ``--batch-size``."""
    for field, flag in option_names().items():
        *parents, name = field.split(".")
        parent = "".join(rf"(?:{p}\.)?" for p in parents)
        message = re.sub(rf"\b(?:\w+Config\.)?{parent}{name}\b", flag, message)
    return message


def train_config(args: argparse.Namespace) -> TrainConfig:
    """The TrainConfig the options ask for; its checks speak of the options.

    ``--num-envs`` alone grows the buffer to room for two iterations of data
    (within the int32 row indices); ``--buffer-capacity`` sets it outright.
    """
    config = TrainConfig()
    changes = {}
    if args.num_envs is not None:
        room = min(2 * args.num_envs, checks.INT32_MAX - args.num_envs)
        changes["buffer_capacity"] = max(config.buffer_capacity, room)
    try:
        for option in OPTIONS:
            asked = getattr(args, option.dest)
            if asked is not None and option.field is not None:
                changes[option.field] = option.value(asked)
        return _replaced(config, changes)
    except ValueError as e:
        raise CliError(as_options(str(e))) from None


def check_resume(args: argparse.Namespace, config: TrainConfig, seed: int) -> None:
    """``--resume`` with an option that would change the run: one clear line
    (the options without ``must_match`` may change)."""
    free = " and ".join(o.flag for o in OPTIONS if not o.must_match)
    for option in OPTIONS:
        asked = getattr(args, option.dest)
        if asked is None or not option.must_match:
            continue
        saved = option.saved(config, seed)
        if option.value(asked) != saved:
            was = "" if option.convert else f" (the checkpoint's is {saved})"
            raise CliError(
                f"--resume continues the checkpoint's run, so {option.flag} {asked} "
                f"cannot apply{was}; only {free} may change"
            )


def check_run(config: TrainConfig, mesh=None, runs: int = 1, over="envs") -> int:
    """Check a fresh run before anything is written: that ``config`` (or the
    ``runs``, ``over="runs"``) splits evenly over the mesh ``--devices``
    asks for (None: one device), and that its ``runs`` fit in the device's
    memory. Each failure is one line that names the options as this command
    spells them. Returns the device count.
    """
    try:
        devices = loop.check_mesh(config, mesh, over=over, runs=runs)
    except ValueError as e:
        raise CliError(as_options(str(e)) + " (--devices)") from None
    try:
        if over == "runs":  # each device holds runs / devices whole runs
            device.check_fits(config, runs=runs // devices)
        else:
            device.check_fits(config, runs=runs, devices=devices)
    except device.RunTooLargeError as e:
        raise CliError(e.describe(option_names(), subject="this run")) from None
    return devices


def _field(config, field: str):
    """``config``'s value of a dotted field: ``"sac.batch_size"``."""
    for part in field.split("."):
        config = getattr(config, part)
    return config


def _replaced(config, changes: dict):
    """``config`` with dotted fields changed, nested configs rebuilt once
    each (so each config checks its new values together)."""
    nested: dict[str, dict] = {}
    flat = {}
    for field, value in changes.items():
        head, dot, rest = field.partition(".")
        if dot:
            nested.setdefault(head, {})[rest] = value
        else:
            flat[field] = value
    for head, inner in nested.items():
        flat[head] = _replaced(getattr(config, head), inner)
    return dataclasses.replace(config, **flat)
