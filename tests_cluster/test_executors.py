"""A small sweep on each engine gives the same run records; a killed worker's run resumes and finishes.

Runs with the optional extra (``pip install -e ".[cluster]"``): ``make test-cluster``. Every engine
stays on this machine: submitit's local executor, and (only with LOMIX_TEST_RAY=1) Ray started by
the driver.
"""
import dataclasses
import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest

import lomix_core as lx
from lomix_core import experiments
from lomix_core.run_lock import CLAIM

TINY = dict(num_subjects=6, num_slices=8, size=32, num_val=1, num_test=1)


def sweep(out_dir, epochs=2) -> list[lx.TrainConfig]:
    base = lx.TrainConfig(epochs=epochs, max_steps_per_epoch=2, batch_size=4, lr=3e-3, model_kwargs={"width": 8},
                          data_kwargs=TINY, out_dir=str(out_dir), progress=False)
    return [dataclasses.replace(base, supervision=p, seed=s) for p in ("last_layer", "lomix") for s in (0, 1)]


def scores(runs) -> list[dict]:
    return [{k: r.record["metrics"][k] for k in ("test_dice", "test_dice_per_class", "steps")} for r in runs]


@pytest.fixture(scope="module")
def local_runs(tmp_path_factory):
    return experiments.run_many(sweep(tmp_path_factory.mktemp("local")), jobs=2)  # 1 thread per run on 2 cores


def test_submitit_gives_the_local_records(local_runs, tmp_path):
    runs = experiments.run_many(sweep(tmp_path), executor="submitit", cluster="local", threads=1)
    assert scores(runs) == scores(local_runs)
    assert (tmp_path / "_submitit").is_dir()


# Ray's own servers do not stay on loopback here: with the driver on 127.0.0.1 (ray 2.60, single node),
# `ss -tlnp` showed gcs_server and raylet listening on every interface and the runtime-env and
# dashboard agents on the host's address (192.0.2.2). Until settings that hold them to 127.0.0.1
# are found, this test runs only when asked for (LOMIX_TEST_RAY=1), never in CI.
@pytest.mark.skipif(os.environ.get("LOMIX_TEST_RAY") != "1",
                    reason="Ray listens beyond loopback (see the comment above); set LOMIX_TEST_RAY=1 to run it")
def test_ray_gives_the_local_records(local_runs, tmp_path):
    import ray

    try:
        runs = experiments.run_many(sweep(tmp_path), executor="ray", threads=1)
    finally:
        ray.shutdown()
    assert scores(runs) == scores(local_runs)


def test_the_environment_picks_the_executor(monkeypatch):
    monkeypatch.setenv(lx.executors.EXECUTOR_ENV, "ray")
    assert lx.executors.resolve(None) == "ray" and lx.executors.resolve("local") == "local"
    monkeypatch.setenv(lx.executors.EXECUTOR_ENV, "slurm")
    with pytest.raises(ValueError, match="unknown executor 'slurm'"):
        lx.executors.resolve(None)


def test_a_killed_job_resumes_and_the_sweep_finishes(tmp_path):
    """The first attempt of one run is killed (SIGKILL) once its first epoch is saved; the executor's
    retry takes over the dead worker's claim and resumes from last.pt. The result equals an
    uninterrupted run's, epoch for epoch."""
    victim, other = sweep(tmp_path, epochs=6)[2:4]  # lomix, seeds 0 and 1
    victim_dir = tmp_path / experiments.keyed(victim).name
    killed = []

    def kill_after_first_epoch():
        while not killed:
            claim = victim_dir / CLAIM
            if (victim_dir / "last.pt").is_file() and claim.is_file():
                pid = json.loads(claim.read_text())["pid"]
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            time.sleep(0.05)

    threading.Thread(target=kill_after_first_epoch, daemon=True).start()
    runs = experiments.run_many([victim, other], executor="submitit", cluster="local", threads=1)
    assert killed, "the run finished before it could be killed"
    uninterrupted = experiments.run_many([dataclasses.replace(victim, out_dir=str(tmp_path / "clean"))], jobs=1)[0]
    assert runs[0].record["metrics"]["test_dice"] == uninterrupted.record["metrics"]["test_dice"]
    assert list(runs[0].epochs["epoch"]) == list(range(1, 7))  # every epoch once: none lost, none twice
    assert not (victim_dir / CLAIM).exists() and runs[1].record["metrics"]["steps"] == 12
