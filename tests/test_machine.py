"""The machine (lomix_core.foundations.machine): the device, its name, the kit's version and a run's environment."""
import importlib.metadata

import torch

import lomix_core as lx
from lomix_core import machine


def test_auto_is_the_gpu_when_there_is_one(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert machine.resolve_device("auto") == torch.device("cpu")
    assert machine.resolve_device("cuda:1") == torch.device("cuda:1")
    name = machine.device_name("cpu")
    assert name.startswith("CPU ") and name.endswith(" cores") and machine.cpu_name() in name
    assert machine.cpu_name() in machine.summary() and f"torch {torch.__version__}" in machine.summary()


def test_autocast_uses_bf16_only_where_native(monkeypatch):
    asked = []

    def is_bf16_supported(including_emulation=True):
        asked.append(including_emulation)
        return including_emulation  # a T4: bf16 only by emulation

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", is_bf16_supported)
    assert machine.autocast_dtype(torch.device("cuda")) == torch.float16 and asked == [False]


def test_the_version_is_the_installed_packages():
    assert lx.__version__ == machine.kit_version() == importlib.metadata.version("lomix-kit")


def test_environment_names_what_numbers_depend_on():
    environment = machine.environment(torch.device("cpu"))
    assert environment["device"] == "cpu" and environment["device_name"] == machine.cpu_name()
    assert environment["torch"] == torch.__version__ and environment["lomix_core"] == lx.__version__
