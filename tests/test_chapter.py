"""A chapter's start line (lomix_core.teaching.chapter.start): profile, device, time, output folder."""
import dataclasses
from pathlib import Path

import pytest
import torch

import lomix_core as lx


def test_start_resolves_the_profile_and_says_where_and_how_long(monkeypatch, capsys):
    cpu = dataclasses.replace(lx.profiles.PROFILE_RECORDS["cpu"], measured_s={"03": 551, "01": 9})
    monkeypatch.setattr(lx.profiles, "PROFILE_RECORDS", {**lx.profiles.PROFILE_RECORDS, "cpu": cpu})
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.delenv(lx.chapter.OUTPUT_ENV, raising=False)
    profile, out = lx.chapter.start("03", "auto", None)
    assert (profile, out) == ("cpu", Path("outputs") / "cpu")  # auto never picks full without a GPU
    line = capsys.readouterr().out
    assert line.startswith("chapter 03 | profile cpu | CPU ") and "took 9 min on" in line
    assert lx.chapter.start("01", "cpu", "elsewhere") == ("cpu", Path("elsewhere"))
    assert "took 9 s on" in capsys.readouterr().out
    colab = lx.chapter.estimate("04", "colab")
    assert colab.startswith("run time not measured on a reference machine yet")
    assert "colab plan: session 2 of 3 runs chapter 04, about 5.0 h on a T4" in colab
    assert "reads the runs of session 1 back" in colab
    assert lx.chapter.plan("03", "cpu") is None  # the cpu profile plans no sessions
    with pytest.raises(ValueError, match="unknown profile 'fast'"):
        lx.chapter.start("03", "fast")


def test_output_folder_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.delenv(lx.chapter.OUTPUT_ENV, raising=False)
    assert lx.chapter.output_folder("cpu") == Path("outputs") / "cpu"
    monkeypatch.setenv(lx.chapter.OUTPUT_ENV, str(tmp_path / "drive"))
    assert lx.chapter.output_folder("auto") == tmp_path / "drive" / "cpu"
    assert lx.chapter.output_folder("cpu", tmp_path / "mine") == tmp_path / "mine"
