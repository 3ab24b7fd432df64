"""Run-time estimates (lomix_core.studies.runtime): which runs they count, how many steps and slices they
expect, and that time scales with the budget. No timing thresholds: times are only compared."""
import dataclasses

import pytest

import lomix_core as lx
from lomix_core import runtime
from lomix_core.studies.runs import keyed, run_many

TINY = dict(batch_size=8, lr=3e-3, progress=False, model_kwargs={"width": 8}, supervision="last_layer",
            data_kwargs=dict(num_subjects=6, num_slices=8, size=32, num_val=1, num_test=1))


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A config whose run has been trained (and is read back, not retrained)."""
    config = lx.TrainConfig(out_dir=str(tmp_path_factory.mktemp("runs")), epochs=1, max_steps_per_epoch=2, **TINY)
    run_many([config], jobs=1)
    return config


def test_estimate_skips_finished_runs_and_counts_the_steps_train_makes(finished):
    todo = [dataclasses.replace(finished, epochs=2, max_steps_per_epoch=None, track_test=True),  # 4 batches of 8
            dataclasses.replace(finished, max_steps_per_epoch=None, steps_per_epoch=3, supervision="lomix")]
    estimate = runtime.estimate([finished, *todo, todo[0]], jobs=1)  # a repeated run trains once

    assert (estimate.to_train, estimate.read_back) == (2, 2)  # as run_many counts them
    assert list(estimate.runs["name"]) == [keyed(c).name for c in todo]
    assert list(estimate.table["runs"]) == [1, 1] and list(estimate.table["setting"]) == [
        "unet_small last_layer", "unet_small lomix"]
    assert (estimate.table["s_per_step"] > 0).all() and estimate.seconds > 0
    assert estimate.seconds == pytest.approx(estimate.runs["seconds"].sum())  # one job: one run after the other
    assert str(estimate).startswith("2 of 4 runs to train (2 read back): about ")
    assert estimate.device in estimate.text and estimate.device.startswith(("CPU", "GPU"))
    # the lomix run (3 steps at lr 3e-3) learns its weights, the last-layer one does not: the bound is lr x steps
    assert estimate.weight_bound == pytest.approx(3e-3 * 3)
    assert "can move about θ's lr x steps = 0.009 at most" in estimate.text
    # with a rate of their own for the map weights, the bound is theirs
    own = runtime.estimate([dataclasses.replace(todo[1], map_weight_lr=0.1)], jobs=1)
    assert own.weight_bound == pytest.approx(0.1 * 3)

    val, test = (lx.data.load("synthetic", split=s, **TINY["data_kwargs"]) for s in ("val", "test"))
    expected_slices = [2 * (len(val) + len(test)) + len(test), len(val) + len(test)]  # track_test scores test per epoch
    assert list(estimate.runs["eval_slices"]) == expected_slices
    for config, expected in zip(todo, estimate.runs["steps"]):
        assert lx.train(keyed(config)).record["metrics"]["steps"] == expected
    assert list(estimate.runs["steps"]) == [8, 3]


def test_time_grows_with_epochs_and_parallel_jobs_share_it(finished):
    configs = [dataclasses.replace(finished, epochs=e, out_dir=finished.out_dir + "-new") for e in (1, 4)]
    runs = runtime.estimate(configs, jobs=1).runs.set_index("steps")["seconds"]
    assert runs[8] / runs[2] > 1.5  # same setting, same measured step: 4x the steps and evaluations
    parallel = runtime.estimate(configs, jobs=2)
    assert parallel.jobs == 2 and "2 runs at a time" in parallel.text
    assert parallel.seconds == pytest.approx(parallel.runs["seconds"].max())  # each run on its own job


def test_nothing_left_to_train_measures_nothing(finished, monkeypatch):
    monkeypatch.setattr(runtime, "_measure", lambda *a, **k: pytest.fail("measured although nothing trains"))
    estimate = runtime.estimate([finished, finished])
    assert (estimate.seconds, estimate.to_train, estimate.read_back) == (0.0, 0, 2)
    assert estimate.text == "all 2 runs are finished: nothing to train (2 read back)"


def test_estimate_needs_a_step_to_time():
    config = lx.TrainConfig(batch_size=8)
    with pytest.raises(ValueError, match="steps must be >= 1"):
        runtime.estimate([config], steps=0)
