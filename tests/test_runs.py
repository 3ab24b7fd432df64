"""Runs are named by what they compute and trained once (lomix_core.studies.runs)."""
import dataclasses

import pytest
import torch

import lomix_core as lx
from lomix_core import runs

DATA = dict(num_subjects=6, num_slices=8, size=32, num_val=1, num_test=1)
TINY = dict(epochs=2, max_steps_per_epoch=2, batch_size=8, lr=3e-3, progress=False, model_kwargs={"width": 8},
            data_kwargs=DATA, track_test=True)


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return lx.TrainConfig(out_dir=str(tmp_path_factory.mktemp("runs")), **TINY)


def test_run_key_names_what_a_run_computes(base):
    key = runs.run_key(base)
    assert len(key) == 10 and runs.keyed(base).name.endswith(key)
    # where a run is written and whether it shows progress do not change what it computes
    assert runs.run_key(dataclasses.replace(base, out_dir="/elsewhere", progress=True, run_name="x")) == key
    assert runs.run_key(dataclasses.replace(base, seed=1)) != key
    assert runs.run_key(dataclasses.replace(base, weighting="equal")) != key


def test_finished_runs_are_read_back_not_retrained(base, monkeypatch):
    first = runs.run_many([base], jobs=1)[0]
    assert (first.run_dir / "best.pt").is_file() and not (first.run_dir / "last.pt").exists()  # only for resuming

    def must_not_train(*args, **kwargs):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(lx.executors, "train", must_not_train)
    again = runs.run_many([base, base], jobs=2)  # a repeated config is one run
    assert [r.run_dir for r in again] == [first.run_dir] * 2
    assert again[0].record == first.record
    assert all(torch.equal(a, b) for a, b in zip(first.model.state_dict().values(), again[0].model.state_dict().values()))


def test_a_changed_source_is_a_different_run(base, monkeypatch):
    key = runs.run_key(base)
    monkeypatch.setattr(runs, "source_digest", lambda: "another version of the kit")
    assert runs.run_key(base) != key


def test_the_run_key_covers_the_c_kernels_too():
    names = {path.name for path in runs.source_files()}
    assert {"cpu_kernels.c", "cpu_kernels.py", "training.py", "__init__.py"} <= names
