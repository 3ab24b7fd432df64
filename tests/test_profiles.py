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
    assert (brain.epochs, brain.lr, brain.data_kwargs, seeds) == (30, 2e-3, {"size": 48}, [0, 1, 2])
    assert profiles.comparison("cpu", dataset="acdc")[0].epochs == 8  # no budget of its own
    assert profiles.comparison("full", dataset="brain_aal")[0].epochs == 100
