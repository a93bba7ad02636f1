"""Argument types and errors shared by the commands of ``sacbook``.

Each type turns one option's text into a value or raises
``argparse.ArgumentTypeError`` with a line naming what is allowed; argparse
prints it with the option's name and exits with status 2.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path


class CliError(Exception):
    """A user error: printed as one line, exit status 2."""


class TrainingFailed(Exception):
    """A run that stopped early (a signal, or non-finite numbers): one line,
    exit status ``exit_code``."""

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code


def describe(command: str, error: BaseException) -> tuple[str, int]:
    """The one line and the exit status that end ``sacbook command`` after
    ``error``: 2 for a user error, a failed run's own status, 130 for an
    interrupt, 1 for anything else (its first line)."""
    if isinstance(error, (CliError, ValueError, OSError)):
        return f"sacbook {command}: error: {error}", 2
    if isinstance(error, TrainingFailed):
        return f"sacbook {command}: {error}", error.exit_code
    if isinstance(error, KeyboardInterrupt):
        return f"sacbook {command}: interrupted", 130
    first = (str(error).strip().splitlines() or [""])[0][:300]
    return f"sacbook {command}: failed: {type(error).__name__}: {first}", 1


def _integer(text: str, low: int, high: int | None, allowed: str) -> int:
    """``text`` as an integer in ``[low, high]``; else one line: ``allowed``."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {allowed}, got {text!r}") from None
    if value < low or (high is not None and value > high):
        raise argparse.ArgumentTypeError(f"expected {allowed}, got {value}")
    return value


def positive_int(text: str) -> int:
    return _integer(text, 1, None, "an integer >= 1")


def int_in(low: int, high: int):
    """An argparse type: an integer in ``[low, high]``."""

    def integer(text: str) -> int:
        return _integer(text, low, high, f"an integer in [{low}, {high}]")

    integer.__name__ = f"int_in_{low}_{high}"
    return integer


def seed_number(text: str) -> int:
    return _integer(text, 0, 2**32 - 1, "an integer in [0, 2**32 - 1]")


def seed_list(text: str) -> list[int]:
    """``0-7``, ``0,3,5`` or ``0-3,8``: the seeds, in order, without repeats."""
    seeds: list[int] = []
    for part in text.split(","):
        low, dash, high = part.strip().partition("-")
        try:
            first = seed_number(low)
            last = seed_number(high) if dash else first
        except argparse.ArgumentTypeError:
            raise argparse.ArgumentTypeError(
                f"expected seeds like 0-7 or 0,3,5 (each in [0, 2**32 - 1]), "
                f"got {text!r}"
            ) from None
        if last < first:
            raise argparse.ArgumentTypeError(
                f"expected a range low-high with low <= high, got {part!r}"
            )
        if last - first >= 4096:
            raise argparse.ArgumentTypeError(
                f"expected at most 4096 seeds, got {part!r}"
            )
        seeds += [seed for seed in range(first, last + 1) if seed not in seeds]
    return seeds


def seeds_text(seeds: list[int]) -> str:
    first, last = seeds[0], seeds[-1]
    if seeds == list(range(first, last + 1)) and len(seeds) > 2:
        return f"{first}-{last}"
    return ",".join(map(str, seeds))


def device_count(text: str) -> int | str:
    """``all`` or a device count >= 1 (checked against the machine later)."""
    if text == "all":
        return text
    try:
        return positive_int(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"expected 'all' or an integer >= 1, got {text!r}"
        ) from None


def writable_dir(path: str, option: str = "--out") -> Path:
    if not path.strip():
        raise CliError(f"{option} is empty; give a folder")
    out = Path(path)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".sacbook-write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise CliError(
            f"{option} {path!r} is not a writable directory ({e.strerror or e})"
        ) from None
    return out


def writable_file(path: str, suffix: str | None = None, option: str = "--out") -> Path:
    if not path.strip():
        raise CliError(f"{option} is empty; give a file name")
    out = Path(path)
    if out.is_dir():
        raise CliError(f"{option} {path!r} is a directory; give a file name")
    if suffix is not None and out.suffix.lower() != suffix:
        raise CliError(f"{option} {path!r} must end in {suffix}")
    writable_dir(str(out.parent), option)
    return out


def finite_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def seconds(text: str, high: float | None = None) -> float:
    value = finite_float(text)
    if value < 0 or (high is not None and value > high):
        allowed = ">= 0" if high is None else f"in [0, {high:g}]"
        raise argparse.ArgumentTypeError(f"expected seconds {allowed}, got {text!r}")
    return value


def add_flags(parser: argparse.ArgumentParser, flags: dict[str, dict]) -> None:
    """Add each option of ``flags``, ``{flag: argparse keywords}``, to ``parser``.

    A command declares its options as one table (see ``cli/bench.py``);
    ``sacbook train``'s run-shaping options have a richer table of their own,
    :data:`sacbook.cli.options.OPTIONS`.
    """
    for flag, keywords in flags.items():
        parser.add_argument(flag, **keywords)


def add_command(subparsers, name: str, help: str, flags: dict[str, dict], run) -> None:
    """Add the command ``name``, with the options ``flags``, that calls ``run``."""
    parser = subparsers.add_parser(name, help=help)
    add_flags(parser, flags)
    parser.set_defaults(func=run)
