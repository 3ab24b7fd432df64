"""Runs, each trained once: a run's folder is named after what it computes, and a finished run is
read back instead of retrained.

Every run trains in a folder named after its config and a digest of the kit's source code
(:func:`keyed`). A finished run is read back, an interrupted one resumes, and the notebooks share
runs: chapter 03's runs are chapter 04's 100 % point and chapter 05's reference, and chapter 06
reads 03's LoMix models. Changing the kit's code changes the digest, so a stale result is never
reused.

On a CPU several runs train at once, one process and one thread each (``jobs``): small networks
keep two threads only partly busy, so two single-threaded runs on two cores finish sooner than
the same runs one after the other.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from pathlib import Path
from typing import Sequence

from . import executors
from ..pipeline.config import TrainConfig, identity
from ..pipeline.training import Run, encoder_weights, load_run

PACKAGE = Path(__file__).resolve().parents[1]  # lomix_core/, whose every file a run key covers


def source_files() -> list[Path]:
    """Every source file of the kit, its Python and the loss's C kernels, in a fixed order."""
    return sorted(p for p in PACKAGE.rglob("*") if p.suffix in (".py", ".c"))


@functools.lru_cache(maxsize=1)
def source_digest() -> str:
    """A digest of the kit's source files: results trained by other code are not reused."""
    digest = hashlib.sha1()
    package = PACKAGE
    for path in source_files():
        digest.update(str(path.relative_to(package)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def run_key(config: TrainConfig) -> str:
    """Ten hex digits that identify what a run computes: its config (less where it is written and
    whether it shows progress), the ImageNet weights a pretrained encoder starts from (a file by its
    sha256) and the kit's source."""
    settings = identity(config)
    if (weights := encoder_weights(config)) is not None:  # $LOMIX_WEIGHTS is not in the config
        settings["encoder_weights"] = weights
    text = json.dumps(settings, sort_keys=True, default=str) + source_digest()
    return hashlib.sha1(text.encode()).hexdigest()[:10]


def keyed(config: TrainConfig) -> TrainConfig:
    """``config`` with a run name that ends in its :func:`run_key`."""
    return dataclasses.replace(config, run_name=f"{config.name}-{run_key(config)}")


def run_many(configs: Sequence[TrainConfig], jobs: int | None = None, executor: str | None = None,
             retries: int = 2, **options) -> list[Run]:
    """Train every config that has not finished yet and read every run back.

    Returns the runs in the order of ``configs``; repeated configs are trained once. ``executor``
    ("local", "submitit", "ray"; default ``$LOMIX_EXECUTOR``, else local) says where they train,
    ``jobs`` how many at once on the local one, ``options`` go to the engine
    (:mod:`lomix_core.studies.executors`). A failed run is tried ``retries`` more times, resuming where it
    stopped; the others go on, and :class:`~lomix_core.studies.executors.SweepError` then names every run that
    still failed. With the local executor and more than one job the runs train in spawned processes,
    so a script (not a notebook) that calls this needs Python's ``if __name__ == "__main__":`` guard.
    """
    configs = [keyed(c) for c in configs]
    todo = list({c.name: c for c in configs if not executors.is_finished(c)}.values())
    if todo:
        print(f"training {len(todo)} of {len(configs)} runs ({len(configs) - len(todo)} read back) "
              f"with the {executors.resolve(executor)} executor", flush=True)
        failures = executors.run(todo, executor, jobs, retries, **options)
        if failures:
            raise executors.SweepError(f"{len(failures)} of {len(todo)} runs failed: "
                                       + "; ".join(f"{name}: {error}" for name, error in failures.items()))
    return [load_run(Path(c.out_dir) / c.name) for c in configs]
