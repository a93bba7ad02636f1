"""The host loop: run the compiled chunk until the end, a stop or a NaN.

One loop for one run (:func:`sacbook.train.train`) and for many as one
program (:func:`sacbook.train.train_runs`, and so ``train_seeds`` and
``sweep``): after each chunk it checks that every number is finite,
records each run's chunk, evaluates, shows progress, calls the callbacks,
saves checkpoints at a fixed cadence and stops when told to. The runs
differ only in the state and the program the caller hands it.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import jax
import numpy as np

from sacbook import checkpoint, checks, distributed, records, sac, sharding
from sacbook.config import TrainConfig
from sacbook.evaluate import SOLVED_RETURN
from sacbook.loop import TrainState
from sacbook.records import (
    NonFiniteError,
    Progress,
    TrainResult,
    first_non_finite,
    summarize_chunk,
)


@dataclasses.dataclass
class Driver:
    """Runs the compiled chunk until the end, a stop or a NaN, for R runs.

    With one run (:func:`train`) the state and the metrics have no run axis;
    with many (``run_keys`` of shape ``(R,)``) every leaf has a leading one.

    Under ``jax.distributed`` every process runs this same loop on the
    global state: each decision (a NaN, solved, a stop asked by a signal)
    is taken from host copies every process shares
    (:func:`sacbook.distributed.fetch`, :func:`~sacbook.distributed.any_process`),
    so all processes take it together and none is left waiting in a
    collective. Only process 0 shows the progress bar; every process saves
    its own shards of each checkpoint.
    """

    config: TrainConfig  # the shared program's config
    seeds: list[int]
    run_configs: list[TrainConfig]  # each run's own (a sweep's settings)
    program: object  # loop.chunk_program(...)
    evaluation: object  # evaluate.evaluate_run, or evaluate_runs for many
    run_keys: jax.Array  # one key, or (R,) keys
    hyper: sac.Hyperparams | None
    histories: list[list]  # each run's records so far (a resumed run's)
    checkpoint_dirs: list[Path] | None = None
    # the options of sacbook.train.train, documented there
    eval_every: int = 1
    target_return: float = SOLVED_RETURN
    stop_when_solved: bool = False
    callbacks: Iterable = ()
    progress: bool = True
    checkpoint_every: int = 10
    should_stop: Callable[[], bool] | None = None
    raise_on_non_finite: bool = True

    def __post_init__(self):
        checks.integer("eval_every", self.eval_every, 1)
        checks.integer("checkpoint_every", self.checkpoint_every, 1)
        self.callbacks = list(self.callbacks)

    @property
    def batched(self) -> bool:
        return self.run_keys.ndim == 1

    def _run(self, tree, i: int):
        """Run ``i``'s part of a tree with a run axis (all of it for one run)."""
        if not self.batched:
            return tree
        return jax.tree.map(lambda x: sharding.take_run(x, i), tree)

    def compile(self, state):
        """The chunk and the evaluation, compiled ahead of time, so that
        compile time is measured apart from run time: ``(chunk, evaluation)``,
        the evaluation None where it is better compiled later.

        A cold start is mostly compiling, and only XLA's compiling leaves
        Python's lock free, so where the evaluation compiles depends on the
        machine. On a GPU (or TPU) it is traced and compiled on a second
        thread while XLA compiles the chunk: the host's cores are the
        compiler's alone. On a CPU the chunk's compile already keeps the
        cores busy, and the evaluation waits for the first chunk
        (:meth:`compile_evaluation`): the device runs it while the host
        compiles (on 2 cores, a cold start 0.1-0.2 s shorter than beside the
        chunk's compile)."""
        lowered = self.program.lower(state, self.config.loop, self.hyper)
        if not _evaluation_beside_chunk():
            return lowered.compile(), None
        params = state.sac.actor_params
        with ThreadPoolExecutor(max_workers=1) as pool:
            evaluation = pool.submit(self.compile_evaluation, params)
            return lowered.compile(), evaluation.result()

    def compile_evaluation(self, params):
        """The evaluation, compiled for actor parameters shaped as ``params``."""
        config = self.config
        lowered = self.evaluation.lower(
            params, self.run_keys, config.sac, config.env, config.eval_envs
        )
        return lowered.compile()

    def run(self, state: TrainState) -> list[TrainResult]:
        """Train from ``state`` to the end of the configs' runs."""
        config, runs = self.config, len(self.seeds)
        t0 = time.perf_counter()
        chunk_fn, eval_fn = self.compile(state)
        compile_seconds = time.perf_counter() - t0

        total = config.total_iterations
        done = int(np.max(distributed.fetch(state.iteration)))
        # a resumed run: saved where it stopped, and maybe solved before
        saved_at = done if self.histories[0] else None
        solved_at = [
            next(
                (dict(h) for h in history if self._solved(h)),
                None,
            )
            for history in self.histories
        ]
        diverged: list[str | None] = [None] * runs
        elapsed = self.histories[0][-1]["wall_seconds"] if self.histories[0] else 0.0
        chunk = len(self.histories[0])
        interrupted = False
        shown = self.progress and distributed.is_primary()
        bar = records.progress_bar(config, total, runs, done) if shown else None
        try:
            while done < total:
                t_start = time.perf_counter()
                state, metrics = chunk_fn(state, self.hyper)
                if eval_fn is None:  # on a CPU: while the first chunk runs
                    eval_fn = self.compile_evaluation(state.sac.actor_params)
                metrics = distributed.fetch(metrics)  # the host sync point
                chunk += 1
                first, done = done + 1, done + config.chunk_iterations
                self._check_finite(
                    metrics, state, chunk, first, done, saved_at, diverged
                )
                returns = None
                if chunk % self.eval_every == 0 or done >= total:
                    params = state.sac.actor_params
                    returns = distributed.fetch(eval_fn(params, self.run_keys))
                    returns = returns.reshape(runs, -1)
                seconds = time.perf_counter() - t_start
                elapsed += seconds
                chunk_records = []
                for i in range(runs):
                    record = summarize_chunk(self._run(metrics, i), config)
                    if returns is not None:
                        record["eval_return"] = float(np.mean(returns[i]))
                    record.update(
                        chunk=chunk,
                        iterations=done,
                        env_steps=done * config.num_envs,
                        wall_seconds=elapsed,
                        # each run's own rate; all runs together made runs x this
                        env_steps_per_second=config.chunk_iterations
                        * config.num_envs
                        / seconds,
                    )
                    self.histories[i].append(record)
                    chunk_records.append(record)
                    if solved_at[i] is None and self._solved(record):
                        solved_at[i] = dict(record)
                if bar is not None:
                    records.show(bar, chunk_records, solved_at)
                progress_now = Progress(
                    chunk_records, self.histories, self.seeds, state
                )
                for callback in self.callbacks:
                    callback(progress_now)
                if self.checkpoint_dirs and chunk % self.checkpoint_every == 0:
                    self._save(state, done)
                    saved_at = done
                if self.stop_when_solved and all(s is not None for s in solved_at):
                    break
                if self.should_stop is not None and distributed.any_process(
                    self.should_stop()
                ):
                    interrupted = True
                    break
            if self.checkpoint_dirs and saved_at != done:
                self._save(state, done)  # the end, unless the cadence just saved it
        finally:
            if bar is not None:
                bar.close()
        return [
            TrainResult(
                state=self._run_state(state, i),
                history=self.histories[i],
                config=self.run_configs[i],
                seed=self.seeds[i],
                compile_seconds=compile_seconds,
                solved_at=solved_at[i],
                interrupted=interrupted,
                diverged=diverged[i],
            )
            for i in range(runs)
        ]

    def _solved(self, record: dict) -> bool:
        return record.get("eval_return", -np.inf) >= self.target_return

    def _check_finite(self, metrics, state, chunk, first, last, saved_at, diverged):
        """Record (or raise, naming the seed) each run's first non-finite
        value: a run that diverged is left to itself; runs never mix."""
        sac_host = distributed.fetch(state.sac)
        for i, seed in enumerate(self.seeds):
            if diverged[i] is not None:
                continue
            bad = first_non_finite(self._run(metrics, i), self._run(sac_host, i))
            if bad is None:
                continue
            diverged[i] = f"chunk {chunk}: {bad}"
            if self.raise_on_non_finite:
                where = ""
                if self.checkpoint_dirs:
                    where = "; last good checkpoint: " + (
                        f"step {saved_at}" if saved_at is not None else "none saved"
                    )
                raise NonFiniteError(
                    f"seed {seed} became non-finite in chunk {chunk} "
                    f"(iterations {first}-{last}): {bad}{where}"
                )

    def _run_state(self, state, i: int) -> TrainState:
        """Run ``i``'s state, with its own SAC config (a sweep's setting)."""
        if not self.batched:
            return state
        run = self._run(state, i)
        return run.replace(sac=run.sac.replace(config=self.run_configs[i].sac))

    def _save(self, state, done: int) -> None:
        # runs spread over several processes are saved whole, one at a time
        whole = self.batched and sharding.runs_span_processes(state.obs)
        for i, directory in enumerate(self.checkpoint_dirs):
            if checkpoint.latest_step(directory) == done and checkpoint.intact(
                directory, done
            ):
                continue  # saved already (a resumed run that stopped at once)
            run = sharding.whole_run(state, i) if whole else self._run(state, i)
            checkpoint.save(
                directory,
                run.replace(sac=run.sac.replace(config=self.run_configs[i].sac)),
                config=self.run_configs[i],
                seed=self.seeds[i],
                history=self.histories[i],
                step=done,
            )


def _evaluation_beside_chunk() -> bool:
    """Whether the evaluation compiles beside the chunk (:meth:`Driver.compile`)."""
    return jax.default_backend() != "cpu"
