"""Executor options reach the engine from Python, from $LOMIX_EXECUTOR_OPTIONS and from the command line,
and a misspelt one stops in one line. No engine is needed: the engine here is a stand-in."""
import os

import pytest

import lomix_core as lx
from lomix_core import executors
from lomix_core.__main__ import main


def test_options_parse_to_numbers_booleans_and_strings():
    assert executors.parse_options("partition=gpu gpus=1,mem_gb=32.5  slurm_requeue=true") == {
        "partition": "gpu", "gpus": 1, "mem_gb": 32.5, "slurm_requeue": True}
    assert executors.parse_options("") == {}
    with pytest.raises(ValueError, match="executor option 'partition' is not KEY=VALUE"):
        executors.parse_options("partition gpus=1")


def test_python_options_win_over_the_environment(monkeypatch):
    monkeypatch.setenv(executors.OPTIONS_ENV, "partition=gpu timeout_min=60")
    assert executors.options_for("submitit", {"timeout_min": 2880, "slurm_account": "abc"}) == {
        "partition": "gpu", "timeout_min": 2880, "slurm_account": "abc"}


@pytest.mark.parametrize("executor, options, message", [
    ("submitit", {"partiton": "gpu"}, "the submitit executor has no option partiton; it takes: gpus, partition,"),
    ("ray", {"slurm_account": "abc"}, "the ray executor has no option slurm_account; it takes: address, gpus, threads"),
    ("local", {"gpus": 1}, "the local executor has no option gpus; it takes: none"),
])
def test_an_unknown_option_is_named_with_what_is_taken(executor, options, message):
    with pytest.raises(ValueError, match=message):
        executors.options_for(executor, options)


def test_the_environment_reaches_the_engine(monkeypatch, tmp_path, capsys):
    seen = {}

    def engine(todo, jobs, report, *, partition=None, gpus=0):
        seen.update(partition=partition, gpus=gpus, runs=[c.name for c in todo])
        return {}

    monkeypatch.setitem(executors._ENGINES, "submitit", engine)
    monkeypatch.setenv(executors.OPTIONS_ENV, "partition=a100 gpus=1")
    config = lx.runs.keyed(lx.TrainConfig(out_dir=str(tmp_path)))
    assert executors.run([config], "submitit") == {}
    assert seen == {"partition": "a100", "gpus": 1, "runs": [config.name]}
    assert "no GPU" not in capsys.readouterr().out

    monkeypatch.setenv(executors.OPTIONS_ENV, "partition=a100")  # no GPU asked for: said once, up front
    assert executors.run([config], "submitit") == {} and seen["gpus"] == 0
    assert "the submitit executor gives each run no GPU (gpus=0)" in capsys.readouterr().out


def test_reproduce_passes_options_to_the_notebooks_and_stops_on_a_misspelt_one(monkeypatch, capsys):
    import lomix_core.teaching.reproduce

    # set (not deleted) so that monkeypatch puts back what main() writes into the environment
    monkeypatch.setenv(executors.OPTIONS_ENV, "")
    monkeypatch.setenv(executors.EXECUTOR_ENV, "local")
    started = []
    monkeypatch.setattr(lomix_core.teaching.reproduce, "reproduce", lambda *a, **k: started.append(dict(os.environ)) or 0)
    assert main(["reproduce", "--profile", "smoke", "--executor", "submitit", "--executor-option", "partition=gpu",
                 "--executor-option", "slurm_account=abc"]) == 0
    assert started[0][executors.OPTIONS_ENV] == "partition=gpu slurm_account=abc"
    assert started[0][executors.EXECUTOR_ENV] == "submitit"

    monkeypatch.setenv(executors.OPTIONS_ENV, "")
    assert main(["reproduce", "--profile", "smoke", "--executor", "ray", "--executor-option", "partition=gpu"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: the ray executor has no option partition;") and err.count("\n") == 1
    assert len(started) == 1  # nothing ran
