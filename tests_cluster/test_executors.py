"""A small sweep on each engine gives the same run records; a killed worker's run resumes and finishes.

Runs with the optional extra (``pip install -e ".[cluster]"``): ``make test-cluster``. Every engine
stays on this machine: submitit's local executor, and, inside a network namespace that has only
loopback, a Ray cluster of two nodes on 127.0.0.1 and a one-node SLURM (Debian's slurm-wlm).
"""
import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import lomix_core as lx
from lomix_core.studies.runs import keyed, run_many
from lomix_core.studies.run_lock import CLAIM

TINY = dict(num_subjects=6, num_slices=8, size=32, num_val=1, num_test=1)


def sweep(out_dir, epochs=2) -> list[lx.TrainConfig]:
    base = lx.TrainConfig(epochs=epochs, max_steps_per_epoch=2, batch_size=4, lr=3e-3, model_kwargs={"width": 8},
                          data_kwargs=TINY, out_dir=str(out_dir), progress=False)
    return [dataclasses.replace(base, supervision=p, seed=s) for p in ("last_layer", "lomix") for s in (0, 1)]


def scores(runs) -> list[dict]:
    return [{k: r.record["metrics"][k] for k in ("test_dice", "test_dice_per_class", "steps")} for r in runs]


@pytest.fixture(scope="module")
def local_runs(tmp_path_factory):
    return run_many(sweep(tmp_path_factory.mktemp("local")), jobs=2)  # 1 thread per run on 2 cores


def test_submitit_gives_the_local_records(local_runs, tmp_path):
    runs = run_many(sweep(tmp_path), executor="submitit", cluster="local", threads=1)
    assert scores(runs) == scores(local_runs)
    assert (tmp_path / "_submitit").is_dir()


# Servers do not stay on loopback by themselves: ray 2.60 started with --node-ip-address=127.0.0.1
# still listened on every interface (gcs_server, raylet) and on the host's address (agents), and
# slurmctld and slurmd listen on every interface. So the Ray and SLURM tests run in a network
# namespace that has nothing but loopback (`make test-cluster` starts it with `unshare -n`, as root)
# and sets LOMIX_TEST_NETNS=1 there; they also check with `ss` that nothing listens or connects
# elsewhere. A second Ray node joins only with token authentication.
def require_loopback_namespace(engine: str) -> None:
    if os.environ.get("LOMIX_TEST_NETNS") != "1":
        pytest.skip(f"{engine} runs only inside a loopback-only network namespace: `make test-cluster` as root "
                    f"(LOMIX_TEST_NETNS=1)")


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory):
    require_loopback_namespace("Ray")
    home = tmp_path_factory.mktemp("ray_home")
    env = {**os.environ, "HOME": str(home), "RAY_AUTH_MODE": "token", "RAY_USAGE_STATS_ENABLED": "0"}
    ray_cli = [sys.executable, "-m", "ray.scripts.scripts"]
    subprocess.run([*ray_cli, "get-auth-token", "--generate"], env=env, check=True, capture_output=True)
    subprocess.run([*ray_cli, "start", "--head", "--port=6379", "--include-dashboard=false", "--num-cpus=1",
                    "--disable-usage-stats"], env=env, check=True, capture_output=True)
    subprocess.run([*ray_cli, "start", "--address=127.0.0.1:6379", "--num-cpus=1"], env=env, check=True,
                   capture_output=True)
    saved = {k: os.environ.get(k) for k in ("HOME", "RAY_AUTH_MODE")}
    os.environ.update(HOME=str(home), RAY_AUTH_MODE="token")
    try:
        yield "127.0.0.1:6379"
    finally:
        import ray

        ray.shutdown()
        subprocess.run([*ray_cli, "stop", "--force"], env=env, capture_output=True)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def outside_loopback() -> list[str]:
    """Sockets listening or connected on an address outside loopback (127.0.0.0/8, ::1) (``ss``)."""
    lines = subprocess.run(["ss", "-tanpH"], capture_output=True, text=True, check=True).stdout.splitlines()
    local = ("127.", "[::ffff:127.", "[::1]:", "*:", "0.0.0.0:", "[::]:")
    return [line for line in lines if not all(field.startswith(local) for field in line.split()[3:5])]


def test_ray_on_two_local_nodes_gives_the_local_records(local_runs, ray_cluster, tmp_path):
    import ray

    runs = run_many(sweep(tmp_path), executor="ray", address=ray_cluster, threads=1)
    assert len(ray.nodes()) == 2 and {n["NodeManagerAddress"] for n in ray.nodes()} == {"127.0.0.1"}
    assert scores(runs) == scores(local_runs)
    assert only_loopback_here() and outside_loopback() == []


def only_loopback_here() -> bool:
    """In this namespace "*" and 0.0.0.0 can only mean loopback: there is no interface but lo."""
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout.splitlines()
    return [line.split(":")[1].strip() for line in links] == ["lo"]


SLURM_CONF = """\
ClusterName=lomix
SlurmctldHost=localhost(127.0.0.1)
NodeName=localhost NodeAddr=127.0.0.1 CPUs={cpus} State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
SlurmUser=root
SlurmdUser=root
AuthType=auth/none
CredType=cred/none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
ReturnToService=2
StateSaveLocation={folder}/state
SlurmdSpoolDir={folder}/spool
SlurmctldPidFile={folder}/slurmctld.pid
SlurmdPidFile={folder}/slurmd.pid
SlurmctldLogFile={folder}/slurmctld.log
SlurmdLogFile={folder}/slurmd.log
"""


@pytest.fixture(scope="module")
def slurm_cluster(tmp_path_factory):
    """A real one-node SLURM: slurmctld and slurmd on 127.0.0.1, no munge (auth/none), no cgroups
    (a container has none to give), no accounting database (so submitit warns that sacct fails and
    reads each job's state from its result file instead)."""
    require_loopback_namespace("SLURM")
    if not (shutil.which("slurmctld") and shutil.which("slurmd") and shutil.which("sbatch")):
        pytest.skip("no SLURM here: `make test-cluster` installs Debian's slurm-wlm when run as root")
    folder = tmp_path_factory.mktemp("slurm")
    for sub in ("state", "spool"):
        (folder / sub).mkdir()
    conf = folder / "slurm.conf"
    conf.write_text(SLURM_CONF.format(cpus=os.cpu_count(), folder=folder))
    saved = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(conf)
    subprocess.run(["slurmctld", "-i"], check=True)
    subprocess.run(["slurmd", "-N", "localhost"], check=True)
    try:
        deadline = time.monotonic() + 60
        while subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True).stdout.strip() != "idle":
            assert time.monotonic() < deadline, (folder / "slurmctld.log").read_text()[-2000:]
            time.sleep(0.5)
        yield folder
    finally:
        subprocess.run(["scancel", "--user", "root"], capture_output=True)
        for daemon in ("slurmd", "slurmctld"):
            pid_file = folder / f"{daemon}.pid"
            if pid_file.is_file():
                subprocess.run(["kill", pid_file.read_text().strip()], capture_output=True)
        if saved is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = saved


def signal_after_first_epoch(run_dir: Path, signum: int) -> list[int]:
    """Send ``signum`` to the worker that trains ``run_dir`` (the pid in its claim) once its first
    epoch is saved; returns the list that the pid is put in when sent."""
    sent: list[int] = []

    def watch():
        while not sent:
            claim = run_dir / CLAIM
            if (run_dir / "last.pt").is_file() and claim.is_file():
                pid = json.loads(claim.read_text())["pid"]
                os.kill(pid, signum)
                sent.append(pid)
            time.sleep(0.05)

    threading.Thread(target=watch, daemon=True).start()
    return sent


def test_slurm_gives_the_local_records(local_runs, slurm_cluster, tmp_path):
    """No cluster named: submitit's AutoExecutor finds SLURM and submits every run with sbatch."""
    runs = run_many(sweep(tmp_path), executor="submitit", partition="debug", threads=1, timeout_min=10)
    assert scores(runs) == scores(local_runs)
    submissions = list((tmp_path / "_submitit").glob("*_submission.sh"))
    assert len(submissions) == 4 and "#SBATCH --partition=debug" in submissions[0].read_text()
    assert only_loopback_here() and outside_loopback() == []


def test_a_preempted_slurm_job_is_requeued_and_resumes(slurm_cluster, tmp_path, capsys):
    """SLURM warns a job with SIGUSR2 before its time limit or pre-emption; submitit then requeues
    it (TrainJob.checkpoint) and SLURM ends the old job. The requeued job takes over the dead
    worker's claim and resumes from last.pt: no retry of the kit's, and every epoch once."""
    victim, other = sweep(tmp_path, epochs=6)[2:4]
    # what SLURM sends first (submitit asks for it with --signal=USR2@90)
    signalled = signal_after_first_epoch(tmp_path / keyed(victim).name, signal.SIGUSR2)
    runs = run_many([victim, other], executor="submitit", partition="debug", threads=1, timeout_min=10)
    assert signalled, "the run finished before it could be pre-empted"
    assert "failed (try" not in capsys.readouterr().out  # SLURM requeued it; the kit did not retry
    logs = "".join(p.read_text() for p in (tmp_path / "_submitit").glob("*_log.err"))
    assert "DUE TO JOB REQUEUE" in logs
    uninterrupted = run_many([dataclasses.replace(victim, out_dir=str(tmp_path / "clean"))], jobs=1)[0]
    assert runs[0].record["metrics"]["test_dice"] == uninterrupted.record["metrics"]["test_dice"]
    assert [list(r.epochs["epoch"]) for r in runs] == [list(range(1, 7))] * 2


def test_the_environment_picks_the_executor(monkeypatch):
    monkeypatch.setenv(lx.executors.EXECUTOR_ENV, "ray")
    assert lx.executors.resolve(None) == "ray" and lx.executors.resolve("local") == "local"
    monkeypatch.setenv(lx.executors.EXECUTOR_ENV, "slurm")
    with pytest.raises(ValueError, match="unknown executor 'slurm'"):
        lx.executors.resolve(None)


@pytest.mark.parametrize("executor", ["local", "submitit", "ray"])
def test_a_killed_worker_resumes_and_the_sweep_finishes(executor, request, tmp_path):
    """The worker training one run is killed (SIGKILL) once its first epoch is saved: a process of the
    local pool (which breaks the pool, so its other run is cut short too), a submitit job, or a Ray
    worker. The executor's retry takes over the dead worker's claim and resumes from last.pt. The
    result equals an uninterrupted run's, epoch for epoch, and no epoch is trained twice."""
    options = {"local": dict(jobs=2), "submitit": dict(cluster="local", threads=1),
               "ray": dict(address=request.getfixturevalue("ray_cluster") if executor == "ray" else None, threads=1)}
    victim, other = sweep(tmp_path, epochs=6)[2:4]  # lomix, seeds 0 and 1
    victim_dir = tmp_path / keyed(victim).name
    killed = signal_after_first_epoch(victim_dir, signal.SIGKILL)
    runs = run_many([victim, other], executor=executor, **options[executor])
    assert killed, "the run finished before its worker could be killed"
    uninterrupted = run_many([dataclasses.replace(victim, out_dir=str(tmp_path / "clean"))], jobs=1)[0]
    assert runs[0].record["metrics"]["test_dice"] == uninterrupted.record["metrics"]["test_dice"]
    for run in runs:
        assert list(run.epochs["epoch"]) == list(range(1, 7))  # every epoch once: none lost, none twice
    assert not (victim_dir / CLAIM).exists() and runs[1].record["metrics"]["steps"] == 12
