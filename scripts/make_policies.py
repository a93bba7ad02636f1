"""Train the policies that the book's live views run, and write them as JSON.

    python scripts/make_policies.py            # write sacbook/static/policies/
    python scripts/make_policies.py --out DIR  # write them somewhere else
    python scripts/make_policies.py --check    # regenerate, compare, exit 1 if stale

Each policy comes from a run the chapters make, with the same configuration and
seed, on the CPU (``JAX_PLATFORMS=cpu``), so the files are the same on every run
of this script with the same JAX on the same kind of CPU:

* ``chapter3.json``: Chapter 3's run, ``TrainConfig.few_envs()``, seed 0: four
  pendulums, 20,000 environment steps.
* ``chapter4_iteration20.json``, ``..._iteration100.json``,
  ``..._iteration300.json``: the default recipe of Chapter 4 (1024 pendulums,
  seed 0) after its first chunk, its fifth and its last, the three stages its
  1024-pendulum grid shows.

Both runs take about 15 s on a 2-core CPU, compilation included.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("JAX_PLATFORMS", "cpu")  # before JAX starts

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from sacbook import export, train  # noqa: E402
from sacbook.config import TrainConfig  # noqa: E402

DEFAULT_OUT = ROOT / "sacbook" / "static" / "policies"
STAGE_CHUNKS = (1, 5, 15)  # Chapter 4's snapshots: iterations 20, 100 and 300


def _info(name: str, config: TrainConfig, record: dict, seed: int) -> dict:
    """What a reader may want to know about a policy's run: no timings, so the
    file is the same on every run."""
    info = {
        "config": name,
        "seed": seed,
        "num_envs": config.num_envs,
        "iterations": int(record["iterations"]),
        "env_steps": int(record["env_steps"]),
    }
    if record.get("eval_return") is not None:
        info["eval_return"] = round(float(record["eval_return"]), 1)
    return info


def make_policies(out: Path) -> list[Path]:
    """Train both runs and write the four policies into ``out``; returns them."""
    out.mkdir(parents=True, exist_ok=True)
    written = []

    chapter3 = TrainConfig.few_envs()
    result = train.train(chapter3, seed=0, progress=False)
    written.append(
        export.write_policy(
            out / "chapter3.json",
            result.state.sac.actor_params,
            chapter3.sac,
            chapter3.env,
            _info("TrainConfig.few_envs()", chapter3, result.history[-1], 0),
        )
    )

    chapter4 = TrainConfig()
    stages = {}

    def keep_actor(progress):
        # the state is donated to the next chunk: copy what we keep
        if progress.record["chunk"] in STAGE_CHUNKS:
            params = jax.tree.map(jnp.copy, progress.state.sac.actor_params)
            stages[progress.record["chunk"]] = (params, progress.record)

    train.train(chapter4, seed=0, progress=False, callbacks=[keep_actor])
    for chunk in STAGE_CHUNKS:
        params, record = stages[chunk]
        path = out / f"chapter4_iteration{record['iterations']}.json"
        info = _info("TrainConfig()", chapter4, record, 0)
        written.append(
            export.write_policy(path, params, chapter4.sac, chapter4.env, info)
        )
    return written


def stale(committed: Path, fresh: list[Path]) -> list[str]:
    """The names among ``fresh`` whose committed copy is missing or differs."""
    return [
        p.name
        for p in fresh
        if not (committed / p.name).is_file()
        or (committed / p.name).read_bytes() != p.read_bytes()
    ]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument(
        "--check",
        action="store_true",
        help="regenerate into a temporary folder and compare with --out",
    )
    args = parser.parse_args(argv)
    if not args.check:
        for path in make_policies(args.out):
            print(f"wrote {path} ({path.stat().st_size:,} bytes)")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        differ = stale(args.out, make_policies(Path(tmp)))
    if differ:
        print(
            f"stale in {args.out}: {', '.join(differ)}; "
            "run python scripts/make_policies.py"
        )
        return 1
    print(f"the policies in {args.out} are what this script makes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
