"""Each profile is one frozen record, and the functions read chapters' settings out of it."""
import dataclasses

import pytest

from lomix_core import profiles


def test_every_profile_is_one_frozen_record():
    assert set(profiles.PROFILE_RECORDS) == set(profiles.PROFILES) - {"auto"}
    cpu = profiles.get("cpu")
    with pytest.raises(dataclasses.FrozenInstanceError):
        cpu.size = 128
    with pytest.raises(TypeError):
        cpu.comparison["epochs"] = 1  # the settings inside are read-only too


def test_configs_do_not_share_the_records_dicts():
    first, _ = profiles.comparison("colab")
    first.model_kwargs["pretrained"] = False
    assert profiles.comparison("colab")[0].model_kwargs == {"pretrained": True}


def test_a_dataset_budget_overrides_the_profiles_comparison():
    brain, seeds = profiles.comparison("cpu")
    assert (brain.epochs, brain.lr, brain.data_kwargs, seeds) == (30, 2e-3, {"size": 48}, [0, 1, 2, 3, 4, 5])
    assert profiles.comparison("cpu", dataset="acdc")[0].epochs == 8  # no budget of its own
    assert profiles.comparison("full", dataset="brain_aal")[0].epochs == 100


def test_the_colab_plan_gives_weights_room_and_fits_its_sessions():
    colab = profiles.get("colab")
    config, seeds = profiles.comparison("colab")
    steps = config.epochs * 13  # brain_aal's 83 training slices in batches of 6, the last partial one dropped
    assert 1_300 <= steps <= 2_600  # near brain_aal's plateau on CPU (>= 1,300 steps), not the former 260
    assert config.lr * steps > 0.1  # lr x steps: how far a learned weight's θ can move
    assert len(seeds) >= 6  # the exact Wilcoxon p can fall below 0.05 only from 6 seeds (2/2^6)
    assert set(profiles.ablation("colab")[1]) <= set(seeds)  # the ablations read chapter 03's full-data runs back
    chapters = [c for session in colab.sessions for c in session]
    assert chapters == sorted(chapters) == [f"0{n}" for n in range(8)]  # every chapter once, in order
    assert set(colab.estimated_h) <= set(chapters)
    for number, session in enumerate(colab.sessions, 1):
        assert sum(colab.estimated_h.get(c, 0.0) for c in session) <= colab.session_limit_h, f"session {number}"
    assert profiles.session("colab", "04") == (2, ("04",)) and profiles.session("cpu", "04") is None


def test_ablation_takes_the_ablation_dataset_and_seeds():
    config, seeds = profiles.ablation("cpu")
    assert config.dataset == profiles.ablation_dataset("cpu") and seeds == [0, 1, 2]
    assert set(seeds) <= set(profiles.comparison("cpu")[1])  # chapter 03's full-data runs are read back
    assert profiles.ablation("smoke")[1] == profiles.comparison("smoke")[1]  # None: the comparison's seeds
    assert profiles.ablation("colab", supervision="lomix")[0].supervision == "lomix"
