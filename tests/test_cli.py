import hashlib
import json
import subprocess
import sys

import pytest

from lomix_core.__main__ import main

TINY = ["--epochs", "1", "--max-steps-per-epoch", "2", "--model-kwargs", '{"width": 8}', "--data-kwargs",
        json.dumps(dict(num_subjects=6, num_slices=8, size=32, num_val=1, num_test=1))]


def test_help_runs_as_a_module():
    out = subprocess.run([sys.executable, "-m", "lomix_core", "--help"], capture_output=True, text=True, check=True)
    for command in ("train", "evaluate", "reproduce"):
        assert command in out.stdout


def test_train_then_evaluate(tmp_path, capsys):
    assert main(["train", "--supervision", "mutation", "--out-dir", str(tmp_path), "--run-name", "cli", *TINY]) == 0
    assert "cli: best epoch 1" in capsys.readouterr().out
    record = json.loads((tmp_path / "cli" / "record.json").read_text())
    assert record["config"]["supervision"] == "mutation" and record["metrics"]["num_supervised_maps"] == 15
    assert main(["evaluate", str(tmp_path / "cli" / "best.pt"), "--split", "val"]) == 0
    out = capsys.readouterr().out
    assert "mean Dice (synthetic, val, native resolution):" in out and "aorta" in out and "mm" in out


def test_train_resume(tmp_path, capsys):
    args = ["train", "--supervision", "mutation", "--out-dir", str(tmp_path), "--run-name", "cli", "--resume", *TINY]
    assert main(args) == 0  # no last.pt yet: a fresh run
    last = tmp_path / "cli" / "last.pt"
    written = last.stat().st_mtime_ns
    assert main(args) == 0 and last.stat().st_mtime_ns == written  # finished: scored again, not retrained
    capsys.readouterr()
    assert main([*args, "--lr", "0.5"]) == 2
    assert capsys.readouterr().err == (f"error: cannot resume {last}: it was written with a different config: "
                                       f"lr=0.5 (saved 0.0001)\n")


def test_bad_choice_is_rejected(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--supervision", "lomixx"])
    assert "invalid choice: 'lomixx'" in capsys.readouterr().err


def test_train_with_local_encoder_weights(tmp_path, capsys):
    import timm
    import torch

    encoder = timm.create_model("pvt_v2_b0", pretrained=False, features_only=True, out_indices=(0, 1, 2, 3))
    torch.save(encoder.state_dict(), tmp_path / "encoder.pth")
    args = ["train", "--model", "pvt_v2_b0_emcad", "--weights", str(tmp_path / "encoder.pth"), "--out-dir",
            str(tmp_path), "--run-name", "pvt", "--epochs", "1", "--max-steps-per-epoch", "1", "--data-kwargs",
            json.dumps(dict(num_subjects=6, num_slices=8, size=32, num_val=1, num_test=1))]
    assert main(args) == 0
    record = json.loads((tmp_path / "pvt" / "record.json").read_text())
    assert record["config"]["model_kwargs"] == {"weights": str(tmp_path / "encoder.pth")}
    sha256 = hashlib.sha256((tmp_path / "encoder.pth").read_bytes()).hexdigest()
    assert record["environment"]["encoder_weights"] == f"sha256:{sha256}"
    capsys.readouterr()
    assert main(args[:4] + [str(tmp_path / "missing.pth")] + args[5:]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: ") and "missing.pth" in error and "does not exist" in error
