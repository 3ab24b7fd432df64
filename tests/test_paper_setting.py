"""The paper's setting: the colab and full profiles, their ImageNet weights, and protocol="official"."""
import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
import torch
from nbformat.v4 import new_code_cell, new_notebook

import lomix_core as lx
from lomix_core.data import synapse
from lomix_core.models import weights

ROOT = Path(__file__).parents[1]
TINY_DATA = dict(num_subjects=6, num_slices=8, size=32, num_val=1, num_test=1)


def offline_env(tmp_path, **extra) -> dict:
    """A child environment with no weights anywhere: no $LOMIX_WEIGHTS, an empty Hugging Face cache and
    the Hub declared offline (so the test means the same on a machine with internet)."""
    env = {k: v for k, v in os.environ.items() if k != weights.WEIGHTS_ENV}
    env |= {"HF_HOME": str(tmp_path / "hf_home"), "HF_HUB_OFFLINE": "1", **extra}
    return env


@pytest.fixture(scope="module")
def fake_weights(tmp_path_factory) -> Path:
    """A timm pvt_v2_b2 encoder state_dict with recognisable values (not ImageNet's: random ones, in fp16
    to halve the file; loading casts them to fp32)."""
    import timm

    torch.manual_seed(123)
    encoder = timm.create_model("pvt_v2_b2", features_only=True, out_indices=(0, 1, 2, 3))
    path = tmp_path_factory.mktemp("weights") / "pvt_v2_b2.pth"
    torch.save({k: v.half() for k, v in encoder.state_dict().items()}, path)
    return path


def test_full_profile_offline_without_weights_stops_in_one_line(tmp_path):
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "lomix_core", "reproduce", "--profile", "full",
                          "--output-root", str(tmp_path / "outputs")],
                         cwd=ROOT, env=offline_env(tmp_path), capture_output=True, text=True, timeout=120)
    seconds = time.perf_counter() - start
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "ImageNet weights for pvt_v2_b2" in lines[0]
    assert "--weights PATH" in lines[0] and "LOMIX_WEIGHTS" in lines[0]
    assert seconds < 60
    assert not (tmp_path / "outputs").exists()  # nothing started


def test_full_profile_with_a_weights_file_starts_and_loads_it(tmp_path, fake_weights):
    """With --weights, the check passes, Synapse's check follows (prepared here from a fake RawData case),
    and the series starts: its notebook builds the profile's pretrained network from the file."""
    from test_data_synapse import make_raw

    synapse.prepare(make_raw(tmp_path / "raw", ["case0005"]), tmp_path / "data" / "synapse", cases=["case0005"])
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    cells = [new_code_cell('PROFILE = "auto"\nOUTPUT_DIR = None'), new_code_cell(
        "import torch, lomix_core as lx\n"
        "config = lx.profiles.comparison(PROFILE, dataset='synapse')[0]\n"
        "model = lx.models.build(config.model, 1, 9, **config.model_kwargs)\n"
        f"saved = torch.load({str(fake_weights)!r})\n"
        "key = 'stages_0.blocks.0.attn.q.weight'\n"
        "assert torch.equal(model.encoder.state_dict()[key], saved[key].float())\n"
        "print('loaded', config.model, config.epochs, config.batch_size, config.lr)")]
    cells[0].metadata["tags"] = ["parameters"]
    nbformat.write(new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "language": "python",
                                                                       "display_name": "Python 3"}}),
                   str(notebooks / "01_start.ipynb"))
    out = subprocess.run([sys.executable, "-m", "lomix_core", "reproduce", "--profile", "full", "--weights",
                          str(fake_weights), "--notebooks", str(notebooks), "--output-root", str(tmp_path / "outputs")],
                         cwd=ROOT, env=offline_env(tmp_path, LOMIX_DATA=str(tmp_path / "data")), capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"pvt_v2_b2 ImageNet weights: {fake_weights}" in out.stdout
    assert f"Synapse: {tmp_path / 'data' / 'synapse'}" in out.stdout
    executed = (tmp_path / "outputs" / "full" / "01_start.ipynb").read_text()
    assert "loaded pvt_v2_b2_emcad 300 6 0.0001" in executed


def test_full_profile_without_synapse_says_how_to_prepare_it(tmp_path, fake_weights):
    env = offline_env(tmp_path, LOMIX_WEIGHTS=str(fake_weights), LOMIX_DATA=str(tmp_path / "empty"))
    out = subprocess.run([sys.executable, "-m", "lomix_core", "reproduce", "--profile", "full"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    line, = out.stderr.strip().splitlines()
    assert "trains on Synapse's 8 organs" in line and "prepare_synapse.py --raw" in line and "synapse.org" in line


def test_chapters_that_train_nothing_need_no_weights(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv(weights.WEIGHTS_ENV, raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(weights, "cached_file", lambda arch: None)  # whatever this machine's cache holds
    assert lx.chapter.start("01", "colab", tmp_path) == ("colab", tmp_path)  # chapter 01 only shows data
    with pytest.raises(FileNotFoundError, match="the colab profile needs ImageNet weights for pvt_v2_b2"):
        lx.chapter.start("03", "colab", tmp_path, datasets=["brain_aal"])


def test_weights_folder_and_missing_file_in_one_line(tmp_path, monkeypatch, fake_weights):
    monkeypatch.setenv(weights.WEIGHTS_ENV, str(fake_weights.parent))
    assert weights.local_file("pvt_v2_b2") == fake_weights
    with pytest.raises(FileNotFoundError, match="folder without pvt_v2_b0.safetensors"):
        weights.local_file("pvt_v2_b0")
    monkeypatch.setenv(weights.WEIGHTS_ENV, str(tmp_path / "nope.pth"))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        weights.local_file("pvt_v2_b2")


def test_profiles_for_the_paper_setting():
    full, seeds = lx.profiles.comparison("full", dataset="synapse")
    assert (full.model, full.batch_size, full.lr, full.data_kwargs["size"]) == ("pvt_v2_b2_emcad", 6, 1e-4, 224)
    assert full.model_kwargs == {"pretrained": True} and len(seeds) == 5
    assert full.protocol == "official" and not full.amp  # the official trainer runs in fp32
    # the paper's 300 epochs of its 2211 training slices in batches of 6, the last one kept: 369 batches an epoch
    assert full.epochs * lx.config.epoch_steps(full, 2211) == 300 * -(-2211 // 6) == 110_700
    assert lx.profiles.comparison_datasets("full") == ["synapse"] and lx.profiles.ablation_dataset("full") == "synapse"
    colab, colab_seeds = lx.profiles.comparison("colab")
    assert colab.dataset == "brain_aal" and colab.model == "pvt_v2_b2_emcad" and colab.model_kwargs["pretrained"]
    assert colab.amp and colab.data_kwargs == {"size": 224} and len(colab_seeds) == 6
    assert lx.profiles.ablation("colab")[1] == colab_seeds[:3]  # chapters 04 and 05 share 03's first three
    assert lx.profiles.comparison_datasets("colab") == ["brain_aal"] and lx.profiles.ablation_dataset("colab") == "brain_aal"
    # another model drops the profile network's options instead of passing "pretrained" to a U-Net
    assert lx.profiles.comparison("colab", model="unet_small")[0].model_kwargs == {}
    assert lx.profiles.cell_timeout("colab") is None


def test_auto_never_picks_full(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert lx.profiles.resolve("auto") == "colab"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert lx.profiles.resolve("auto") == "cpu"


def test_official_protocol_trains_on_train_and_val_and_keeps_the_last_epoch(tmp_path):
    config = lx.TrainConfig(model="pvt_v2_b0_emcad", supervision="lomix", protocol="official", epochs=2,
                            max_steps_per_epoch=1, batch_size=2, data_kwargs=TINY_DATA, out_dir=str(tmp_path),
                            progress=False)
    run = lx.train(config)
    train = lx.data.load("synthetic", split="train", **TINY_DATA)
    val = lx.data.load("synthetic", split="val", **TINY_DATA)
    assert run.record["data"]["train_slices"] == len(train) + len(val)
    assert run.record["metrics"]["best_epoch"] == 2 and run.record["metrics"]["val_dice"] is None
    assert run.record["metrics"]["selected_on"].startswith("last epoch")
    assert any(isinstance(m, torch.nn.ReLU6) for m in run.model.modules())
    assert set(run.loss_fn.mutant_generator.wf) == {"2", "3", "4"}  # one wf module per subset size
    kit_model, kit_loss = lx.checkpoints.build_model_and_loss(lx.TrainConfig(**{**config.__dict__, "protocol": "kit"}),
                                                           1, 4, torch.device("cpu"))
    assert len(kit_loss.mutant_generator.wf) == 11
    assert not any(isinstance(m, torch.nn.ReLU6) for m in kit_model.modules())
    # what was trained under the official protocol is rebuilt the same way from its checkpoint
    trained = lx.load_checkpoint(run.run_dir / "best.pt")
    assert any(isinstance(m, torch.nn.ReLU6) for m in trained.model.modules())


def test_official_protocol_needs_an_emcad_model():
    with pytest.raises(ValueError, match="protocol='official' reproduces the official EMCAD network"):
        lx.checkpoints.model_kwargs(lx.TrainConfig(model="unet_small", protocol="official"))
    with pytest.raises(ValueError, match="unknown protocol"):
        lx.TrainConfig(protocol="paper")


def test_joined_splits(tmp_path):
    train = lx.data.load("synthetic", split="train", augment=True, **TINY_DATA)
    val = lx.data.load("synthetic", split="val", **TINY_DATA)
    both = train.joined(val)
    assert len(both) == len(train) + len(val) and both.transform is train.transform
    assert both.subjects == train.subjects + val.subjects and torch.equal(both.labels[len(train):], val.labels)
    with pytest.raises(ValueError, match="both hold subjects"):
        train.joined(train)
    with pytest.raises(ValueError, match="prepared differently"):
        train.joined(lx.data.load("synthetic", split="val", **{**TINY_DATA, "size": 16}))


def test_the_weights_file_is_part_of_a_pretrained_runs_key(tmp_path, monkeypatch):
    """$LOMIX_WEIGHTS is not in the config, so the run key names the file by its content: runs made
    from two different files are never read back for each other; a run from scratch ignores it."""
    from lomix_core.studies.runs import run_key

    pretrained = lx.TrainConfig(model="pvt_v2_b0_emcad", model_kwargs={"pretrained": True})
    scratch = lx.TrainConfig(model="pvt_v2_b0_emcad")
    first, second = tmp_path / "a.pth", tmp_path / "b.pth"
    first.write_bytes(b"one set of weights")
    second.write_bytes(b"another set of weights")
    keys = {}
    for name, path in (("none", None), ("a", first), ("b", second), ("a again", tmp_path / "a_copy.pth")):
        if path is None:
            monkeypatch.delenv("LOMIX_WEIGHTS", raising=False)
        else:
            if not path.exists():
                path.write_bytes(first.read_bytes())
            monkeypatch.setenv("LOMIX_WEIGHTS", str(path))
        keys[name] = (run_key(pretrained), run_key(scratch))
    assert len({keys[n][0] for n in ("none", "a", "b")}) == 3  # hub, file a, file b
    assert keys["a again"][0] == keys["a"][0]  # the same bytes under another name: the same run
    assert len({scratch_key for _, scratch_key in keys.values()}) == 1
    assert lx.training.encoder_weights(pretrained) == f"sha256:{hashlib.sha256(first.read_bytes()).hexdigest()}"
