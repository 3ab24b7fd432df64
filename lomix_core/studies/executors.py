"""Where a sweep's runs train: this machine's processes, a SLURM cluster (submitit) or a Ray cluster.

``run_many(configs, executor=...)`` hands every unfinished run to one engine and reads every run
back from its folder. The kit does not schedule: the engines do. What makes handing a run over safe
is the run folder (:mod:`lomix_core.studies.runs`): it is named by the run's config and the kit's
source, so a finished run is read back instead of trained, an interrupted one resumes from its
``last.pt``, and :class:`~lomix_core.studies.run_lock.RunLock` keeps two workers from training it at once.
A run that fails is named with its error and the others go on; each is tried ``retries`` more
times (a killed worker, a pre-empted job), resuming where it stopped.

* ``local`` — processes on this machine (one run at a time on a GPU; one single-threaded run per
  core on a CPU);
* ``submitit`` — ``submitit.AutoExecutor``: SLURM where ``sbatch`` exists, its local executor
  otherwise; options ``gpus``, ``partition``, ``timeout_min``, ``mem_gb``, ``folder``, ``threads``,
  and any of submitit's own ``slurm_*`` parameters (``slurm_account``, ``slurm_qos``, ...);
* ``ray`` — one Ray task per run with ``num_gpus`` each, on ``ray.init(address=...)`` (``address``
  option or ``$RAY_ADDRESS``; a fresh single-machine cluster on 127.0.0.1 when neither is given).

The engines are the optional extra ``pip install "lomix-kit[cluster]"``. ``$LOMIX_EXECUTOR`` picks
the executor where none is passed and ``$LOMIX_EXECUTOR_OPTIONS`` (``"partition=gpu gpus=1"``) adds
its options, so notebooks run by papermill inherit both; options passed in Python win.
"""
from __future__ import annotations

import dataclasses
import inspect
import json
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from tqdm.auto import tqdm

from .run_lock import RunLock
from ..pipeline.training import TrainConfig, train

EXECUTORS = ("local", "submitit", "ray")
EXECUTOR_ENV = "LOMIX_EXECUTOR"
OPTIONS_ENV = "LOMIX_EXECUTOR_OPTIONS"


class SweepError(RuntimeError):
    """Some runs of a sweep failed (after their retries); the message names each with its error."""


def resolve(executor: str | None) -> str:
    executor = executor or os.environ.get(EXECUTOR_ENV) or "local"
    if executor not in EXECUTORS:
        raise ValueError(f"unknown executor {executor!r}; expected one of {EXECUTORS} (argument or ${EXECUTOR_ENV})")
    return executor


def parse_options(text: str) -> dict[str, Any]:
    """``"partition=gpu gpus=1 mem_gb=32.5"`` (spaces or commas between) → ``{"partition": "gpu",
    "gpus": 1, "mem_gb": 32.5}``; numbers become numbers and true/false booleans."""
    options: dict[str, Any] = {}
    for item in text.replace(",", " ").split():
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            raise ValueError(f"executor option {item!r} is not KEY=VALUE, e.g. partition=gpu")
        options[key] = _value(value)
    return options


def _value(text: str) -> Any:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def options_for(executor: str, options: dict[str, Any]) -> dict[str, Any]:
    """``$LOMIX_EXECUTOR_OPTIONS`` updated with ``options``, checked against what ``executor`` takes."""
    merged = {**parse_options(os.environ.get(OPTIONS_ENV, "")), **options}
    taken = [name for name, p in inspect.signature(_ENGINES[executor]).parameters.items() if p.kind is p.KEYWORD_ONLY]
    passthrough = "slurm_" if executor == "submitit" else None  # submitit checks its own slurm_* names
    unknown = sorted(k for k in merged if k not in taken and not (passthrough and k.startswith(passthrough)))
    if unknown:
        takes = ", ".join(taken + ["slurm_*"] * bool(passthrough)) or "none"
        raise ValueError(f"the {executor} executor has no option {', '.join(unknown)}; it takes: {takes} "
                         f"(run_many(..., option=value) or ${OPTIONS_ENV})")
    return merged


def is_finished(config: TrainConfig) -> bool:
    run_dir = Path(config.out_dir) / config.name
    return (run_dir / "record.json").is_file() and (run_dir / "best.pt").is_file()


def train_claimed(config: TrainConfig, threads: int | None = None, poll: float = 5.0) -> dict[str, Any]:
    """Train ``config`` unless it is finished, holding its run folder's claim; returns its record.

    Another live worker's claim is waited out: when it is released the run is finished (read back)
    or was abandoned (trained here, resuming from ``last.pt``).
    """
    if threads is not None:
        torch.set_num_threads(threads)
    run_dir = Path(config.out_dir) / config.name
    lock = RunLock(run_dir)
    while not lock.acquire():
        time.sleep(poll)
    try:
        if not is_finished(config):
            # The record says how the run went; last.pt (weights, optimiser moments and a second copy
            # of the best weights, about 4x the model) only serves to resume, and a series keeps
            # over a hundred runs.
            train(config, resume=True)
            (run_dir / "last.pt").unlink(missing_ok=True)
        return json.loads((run_dir / "record.json").read_text())
    finally:
        lock.release()


def run(configs: Sequence[TrainConfig], executor: str | None = None, jobs: int | None = None,
        retries: int = 2, **options) -> dict[str, str]:
    """Train ``configs`` (keyed, unfinished, distinct) on ``executor``; returns run name → error line
    of the runs that still failed after ``retries`` more tries (empty when all finished)."""
    executor = resolve(executor)
    engine: Callable = _ENGINES[executor]
    options = options_for(executor, options)
    if executor != "local" and not options.get("gpus") and options.get("cluster") != "local":
        # Ray hides the GPUs from a task that asked for none, and SLURM does where it constrains
        # devices: device="auto" then trains on the CPU, far slower at the paper's setting
        print(f"the {executor} executor gives each run no GPU (gpus=0): they train on CPUs; for one GPU a run "
              f"pass gpus=1 (--executor-option gpus=1)", flush=True)
    todo, failures = list(configs), {}
    progress = tqdm(total=len(todo), desc=f"runs ({executor})", unit="run")
    for attempt in range(retries + 1):
        errors = engine(todo, jobs=jobs, report=lambda name, record: _report(progress, name, record), **options)
        failures = {c.name: errors[c.name] for c in todo if c.name in errors}
        todo = [c for c in todo if c.name in failures]
        if not todo:
            break
        for name, error in failures.items():
            print(f"run {name} failed (try {attempt + 1} of {retries + 1}): {error}", flush=True)
    progress.close()
    return failures


def _report(progress: tqdm, name: str, record: dict[str, Any]) -> None:
    metrics = record["metrics"]
    progress.write(f"{name}: test Dice {metrics['test_dice']:.4f}, {metrics['train_time_s']:.0f} s")
    progress.update()


def _quiet(todo: list[TrainConfig]) -> list[TrainConfig]:
    # Progress bars of parallel or remote workers would interleave: the parent reports one line per run.
    return [dataclasses.replace(c, progress=False) for c in todo]


def _one_line(error: BaseException) -> str:
    return f"{type(error).__name__}: {' '.join(str(error).split())}"


def default_jobs(num_runs: int) -> int:
    """One run at a time on a GPU; on a CPU one single-threaded run per core (at most 8)."""
    if torch.cuda.is_available():
        return 1
    return max(1, min(num_runs, os.cpu_count() or 1, 8))


def _local(todo: list[TrainConfig], jobs: int | None, report: Callable) -> dict[str, str]:
    jobs = default_jobs(len(todo)) if jobs is None else jobs
    if jobs < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}")
    errors: dict[str, str] = {}
    if jobs == 1 or len(todo) == 1:
        for config in todo:
            try:
                report(config.name, train_claimed(config))
            except Exception as error:  # one failure does not stop the sweep
                errors[config.name] = _one_line(error)
        return errors
    threads = max(1, (os.cpu_count() or 1) // jobs)
    quiet = _quiet(todo)
    with ProcessPoolExecutor(jobs, mp_context=get_context("spawn")) as pool:
        futures = {pool.submit(train_claimed, c, threads): c.name for c in quiet}
        for future in as_completed(futures):
            try:
                report(futures[future], future.result())
            except BrokenProcessPool:  # a worker was killed: every run still pending is retried
                errors[futures[future]] = "a worker process died (killed, or out of memory)"
            except Exception as error:
                errors[futures[future]] = _one_line(error)
    return errors


def _submitit(todo: list[TrainConfig], jobs: int | None, report: Callable, *, gpus: int = 0,
              partition: str | None = None, timeout_min: int = 60 * 24, mem_gb: float | None = None,
              folder: str | None = None, cluster: str | None = None, threads: int = 1,
              **slurm_parameters) -> dict[str, str]:
    import submitit

    folder = folder or str(Path(todo[0].out_dir) / "_submitit")
    executor = submitit.AutoExecutor(folder=folder, cluster=cluster)
    parameters: dict[str, Any] = {"timeout_min": timeout_min, "gpus_per_node": gpus, "cpus_per_task": threads}
    if partition:
        parameters["slurm_partition"] = partition
    if mem_gb:
        parameters["mem_gb"] = mem_gb
    executor.update_parameters(**parameters, **slurm_parameters)
    pending = {executor.submit(TrainJob(), c, threads): c.name for c in _quiet(todo)}
    errors: dict[str, str] = {}
    while pending:
        for job in [j for j in pending if j.done()]:
            name = pending.pop(job)
            try:
                report(name, job.result())
            except Exception as error:
                errors[name] = _one_line(error)
        time.sleep(0.5)
    return errors


class TrainJob:
    """A submitit job that trains one run; on SLURM pre-emption or timeout it is requeued and
    resumes from the run's ``last.pt``."""

    def __call__(self, config: TrainConfig, threads: int) -> dict[str, Any]:
        return train_claimed(config, threads)

    def checkpoint(self, config: TrainConfig, threads: int):
        import submitit

        return submitit.helpers.DelayedSubmission(TrainJob(), config, threads)


def _ray(todo: list[TrainConfig], jobs: int | None, report: Callable, *, address: str | None = None,
         gpus: float = 0, threads: int = 1) -> dict[str, str]:
    import ray

    if not ray.is_initialized():
        address = address or os.environ.get("RAY_ADDRESS")
        ray.init(address=address, include_dashboard=False, log_to_driver=False,
                 **({} if address else {"_node_ip_address": "127.0.0.1", "num_cpus": os.cpu_count()}))
    task = ray.remote(num_gpus=gpus, num_cpus=threads, max_retries=0)(train_claimed)
    pending = {task.remote(c, threads): c.name for c in _quiet(todo)}
    errors: dict[str, str] = {}
    while pending:
        done, _ = ray.wait(list(pending), num_returns=1)
        name = pending.pop(done[0])
        try:
            report(name, ray.get(done[0]))
        except Exception as error:  # RayTaskError wraps the run's error; a dead worker raises too
            errors[name] = _one_line(getattr(error, "cause", None) or error)
    return errors


_ENGINES: dict[str, Callable] = {"local": _local, "submitit": _submitit, "ray": _ray}
