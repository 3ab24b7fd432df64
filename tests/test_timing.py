"""The benchmark code runs and reports what it claims; it asserts structure, never timings."""
import subprocess
import sys
from pathlib import Path

import lomix_core as lx
from lomix_core.pipeline.timing import inference_overhead, step_times

TINY = dict(size=32, classes=4, steps=1, warmup=0)


def test_step_times_table():
    table = step_times("unet_small", ["lomix", "mutation"], "cpu", batch=2, official=True, floor=True, **TINY)
    assert list(table["preset"]) == ["last_layer", "lomix", "mutation"]  # last_layer added and first
    assert list(table["maps"]) == [1, 48, 15]
    assert table["step_vs_last_layer"].iloc[0] == 1.0
    assert (table[["step_ms", "loss_ms"]] > 0).all().all()
    assert table.loc[table.preset == "lomix", "official_loss_ms"].iloc[0] > 0
    floors = table.set_index("preset")[["floor_ce_ms", "floor_stats_ms"]]
    assert (floors.loc["lomix"] > 0).all() and floors.drop(index="lomix").isna().all().all()  # the LoMix row only
    assert (table[["step_peak_mib", "loss_peak_mib"]] > 0).all().all()  # CPU: from the profiler's memory events
    lomix = table.set_index("preset").loc["lomix"]
    assert lomix.loss_extra_mib > 0  # 48 maps take more than one


def test_step_times_time_the_training_step(monkeypatch):
    """The benchmark's step is training's Stepper, not a copy of it."""
    calls = []

    class Counting(lx.training.Stepper):
        def __call__(self, images, labels):
            calls.append(self.loss_fn.supervision)
            return super().__call__(images, labels)

    monkeypatch.setattr(lx.timing, "Stepper", Counting)
    step_times("unet_small", ["last_layer"], "cpu", batch=2, **TINY)
    assert calls and set(calls) == {"last_layer"}


def test_cpu_peak_memory_counts_what_is_alive_at_once():
    import torch

    def two_then_one():
        a, b = torch.ones(2 ** 20), torch.ones(2 * 2 ** 20)  # 4 + 8 MiB
        del a
        c = torch.ones(2 ** 19)  # 2 MiB, while b (8) lives: 10 < 12
        del b, c

    assert lx.timing.peak_memory_mib(two_then_one, torch.device("cpu")) == 12.0


def test_cpu_peak_memory_keeps_the_profilers_native_chatter_out_of_stderr(capfd):
    import os

    import torch

    def noisy():
        os.write(2, b"profiler_start\n")  # what the profiler's native library writes to fd 2
        torch.ones(8)

    lx.timing.peak_memory_mib(noisy, torch.device("cpu"))
    os.write(2, b"after\n")  # and fd 2 works again afterwards
    err = capfd.readouterr().err
    assert "profiler_start" not in err and "gpuGetDeviceCount" not in err and "after" in err


def test_inference_overhead_compares_against_last_layer_even_if_not_asked():
    table = inference_overhead("unet_small", ["lomix"], "cpu", **TINY)
    assert list(table["preset"]) == ["last_layer", "lomix"] and table["inference_vs_last_layer"].iloc[0] == 1.0


def test_inference_overhead_model_is_the_same_for_every_preset():
    table = inference_overhead("unet_small", list(lx.PRESETS), "cpu", **TINY)
    assert table["model_parameters"].nunique() == 1
    training_only = dict(zip(table["preset"], table["training_only_parameters"]))
    assert training_only["last_layer"] == 0 and training_only["mutation"] == 0
    assert training_only["lomix"] == sum(p.numel() for p in lx.LoMixLoss(4, 4, supervision="lomix").parameters()) > 48


def test_scripts_print_a_table():
    for script in ("benchmarks/step_time.py", "benchmarks/inference_overhead.py"):
        out = subprocess.run([sys.executable, str(Path(__file__).parents[1] / script), "--device", "cpu", "--size", "32", "--steps", "1",
                              "--warmup", "0", "--presets", "last_layer", "lomix"],
                             capture_output=True, text=True, check=True).stdout
        assert "| preset |" in out and "| lomix |" in out


def test_upsample_script_times_both_ways_and_finds_them_equal():
    out = subprocess.run([sys.executable, str(Path(__file__).parents[1] / "benchmarks/upsample_time.py"), "--size", "32",
                          "--batch", "2", "--steps", "2"], capture_output=True, text=True, check=True).stdout
    rows = [line.split("|") for line in out.splitlines() if line.startswith("| stride")]
    assert [row[1].strip() for row in rows] == ["stride 8", "stride 4", "stride 2"]
    assert all(float(row[-3]) < 1e-5 and float(row[-2]) < 1e-5 for row in rows)  # the two ways' outputs and gradients
    assert "all three: F.interpolate" in out


def test_full_profile_script_runs_every_preset_through_train(tmp_path):
    out = subprocess.run([sys.executable, str(Path(__file__).parents[1] / "benchmarks/full_profile_steps.py"),
                          "--steps", "1", "--model", "unet_small", "--size", "32", "--device", "cpu",
                          "--presets", "lomix", "--out-dir", str(tmp_path)], capture_output=True, text=True, check=True).stdout
    assert "| last_layer | 1 | 1 |" in out and "| lomix | 48 | 1 |" in out
    assert (tmp_path / "synthetic-unet_small-lomix-seed0" / "record.json").exists()


def test_profile_hours_counts_the_chapters_runs_and_steps():
    """docs/gpu.md's hours table: exact run and step counts (the hours are assumptions, not checked)."""
    out = subprocess.run([sys.executable, str(Path(__file__).parents[1] / "benchmarks/profile_hours.py")],
                         capture_output=True, text=True, check=True).stdout
    colab, full = out.split("full profile")
    # colab: 5 presets x 6 seeds + the frozen-BatchNorm run, 150 epochs of brain_aal's 83 // 6 = 13 batches
    assert "| 03 | 31 | 60450 |" in colab
    # low data, 3 seeds: brain_aal's 7 slabs give sizes 1, 2, 4 (and 7, chapter 03's runs): 3 x 5 x 3 runs
    assert "| 04 | 45 | 87750 |" in colab
    # the hours the colab profile's plan states are this table's
    t4_hours = {line.split("|")[1].strip(): float(line.split("|")[4]) for line in colab.splitlines()
                if line.startswith("| 0")}
    assert t4_hours == dict(lx.profiles.get("colab").estimated_h)
    # and docs/gpu.md's table shows this table's colab runs, steps and T4 hours
    counted = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:5]] for line in colab.splitlines()
               if line.startswith("| 0") or line.startswith("| series")}
    doc = (Path(__file__).parents[1] / "docs/gpu.md").read_text()
    shown = {line.split("|")[1].split()[0]: [c.strip().replace(",", "") for c in line.split("|")[2:5]]
             for line in doc.splitlines() if line.startswith("| 0") or line.startswith("| series")}
    assert len(shown) == 6 and shown == counted  # 00, 02, 03, 04, 05 and the series
    # full: 5 presets x 5 seeds + 1 at 300 x 369 steps on Synapse
    assert "| 03 | 26 | 2878200 |" in full


def test_loss_page_faults_measures_both_paths_and_restores_the_fused_one():
    import importlib.util

    import torch

    from lomix_core import fused_mutants

    path = Path(__file__).parents[1] / "benchmarks/loss_page_faults.py"
    spec = importlib.util.spec_from_file_location("loss_page_faults", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    applies = fused_mutants.applies
    images, target = torch.randn(2, 1, 32, 32), torch.randint(0, 8, (2, 32, 32))
    for fused in (True, False):
        result = script.measure(fused, images, target, calls=1)
        assert set(result) == {"loss", "step"}
        assert all(faults >= 0 and ms > 0 for faults, ms in result.values())
        assert fused_mutants.applies is applies  # the built path's switch is undone


def test_abdomen_selection_chooses_one_setting_at_a_time_on_validation_and_never_loads_test(monkeypatch, capsys):
    import importlib.util

    spec = importlib.util.spec_from_file_location("abdomen_selection",
                                                  Path(__file__).parents[1] / "benchmarks/abdomen_selection.py")
    study = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(study)
    best = {"augment": False, "intensity": "zscore", "size": 96, "epochs": 120}
    asked = []

    def fake_validation_dice(arm, preset, seeds, root, out):  # one point for each setting that matches best
        asked.append(dict(arm))
        return sum(arm[key] == value for key, value in best.items()) + 0.0

    def no_test(arm, name, root):
        raise AssertionError(f"selection loaded the {name} split")

    monkeypatch.setattr(study, "validation_dice", fake_validation_dice)
    monkeypatch.setattr(study, "split", no_test)
    assert study.select("lomix", [0], None, Path("unused"), sizes=(64, 96), epochs=(60, 120)) == best
    # 3 augmentations, then 2 normalisations, 2 sizes and 2 budgets, each from the choice before it
    assert len(asked) == 9 and asked[0] == study.DEFAULTS
    assert asked[3] == {**study.DEFAULTS, "augment": False} and asked[-1] == best
    assert "chosen on validation: none_zscore_96px_120ep" in capsys.readouterr().out
