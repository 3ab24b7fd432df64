"""Resuming: a run killed mid-epoch and resumed ends bit-identical to one never interrupted."""
import dataclasses
import json
import os
import signal
import subprocess
import sys

import pytest
import torch

import lomix_core as lx
from lomix_core.pipeline.checkpoints import ResumeError
from test_training import assert_same_run, tiny_config

STEPS_PER_EPOCH = 2

# The child trains and, at the second step of epoch 3, says so and waits to be killed. The hook
# only counts forward passes, so the child computes exactly what an untouched run computes.
CHILD = f"""
import json, sys, time
import torch
import lomix_core as lx

torch.set_num_threads(1)  # as the test process does: see one_thread
build, passes = lx.models.build, []

def build_and_pause(*args, **kwargs):
    model = build(*args, **kwargs)

    def count(module, inputs):
        if torch.is_grad_enabled():  # a training step, not a validation
            passes.append(1)
            if len(passes) == 2 * {STEPS_PER_EPOCH} + 2:
                print("paused", flush=True)
                time.sleep(600)

    model.register_forward_pre_hook(count)
    return model

lx.models.build = build_and_pause
lx.train(lx.TrainConfig(**json.loads(sys.argv[1])))
"""


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # Every run here, the child's included, uses one thread: bit-identity needs the same count on
    # both sides (another may sum in another order), and on a busy 2-core machine one thread is
    # many times faster than two contending ones.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def small_config(out_dir, **overrides):
    # "mutation" with concat fusion and softplus weights: a loss with learnable weights and convs,
    # at a tenth of the full LoMix preset's step time.
    return tiny_config(out_dir, supervision="mutation", operators=["concat"], weighting="softplus",
                       run_name="run", **overrides)


def assert_same_tensors(a: dict, b: dict):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_a_run_killed_mid_epoch_resumes_bit_identical(tmp_path):
    config = small_config(tmp_path / "killed", epochs=3, max_steps_per_epoch=STEPS_PER_EPOCH)
    run_dir = tmp_path / "killed" / "run"
    child = subprocess.Popen([sys.executable, "-c", CHILD, json.dumps(dataclasses.asdict(config))],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline() == "paused\n", "the child stopped before epoch 3"
        last = torch.load(run_dir / "last.pt", weights_only=False)
        os.kill(child.pid, signal.SIGKILL)
        assert child.wait(timeout=60) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
    # Killed mid-way through epoch 3: two epochs saved, no record written.
    assert last["epoch"] == 2 and len(last["epochs"]) == 2 and not (run_dir / "record.json").exists()
    assert {"model", "loss_fn", "optimizer", "scaler", "rng", "best", "step_losses", "step_weights"} <= set(last)

    resumed = lx.train(config, resume=True)
    # It continued rather than started over: epochs 1 and 2 keep the killed run's timings.
    assert resumed.epochs["elapsed_s"].tolist()[:2] == [row["elapsed_s"] for row in last["epochs"]]
    # resume=True without a last.pt starts fresh: this is the uninterrupted run.
    uninterrupted = lx.train(dataclasses.replace(config, out_dir=str(tmp_path / "whole")), resume=True)

    assert_same_run(resumed, uninterrupted)
    final = [torch.load(run.run_dir / "last.pt", weights_only=False) for run in (resumed, uninterrupted)]
    for part in ("model", "loss_fn"):  # the last epoch's weights too, not only the selected ones
        assert_same_tensors(final[0][part], final[1][part])
    assert len(resumed.history) == 3 * STEPS_PER_EPOCH


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    return lx.train(small_config(tmp_path_factory.mktemp("runs"), epochs=2, max_steps_per_epoch=STEPS_PER_EPOCH))


def test_resuming_a_finished_run_trains_nothing(finished):
    last = finished.run_dir / "last.pt"
    written = last.stat().st_mtime_ns
    again = lx.train(dataclasses.replace(finished.config, progress=True), resume=True)  # a progress bar may change
    assert last.stat().st_mtime_ns == written  # no epoch ran, so last.pt was not rewritten
    assert_same_run(again, finished)


def test_resume_refuses_a_different_config(finished):
    changed = dataclasses.replace(finished.config, lr=1e-2, seed=1)
    with pytest.raises(ResumeError, match=r"different config: lr=0\.01 \(saved 0\.003\), seed=1 \(saved 0\)$"):
        lx.train(changed, resume=True)
