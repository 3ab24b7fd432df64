"""The parts of lomix_core.integrations that need no extra: the nnU-Net trainer shim's install and
uninstall (on a stand-in folder), their refusals when nnunetv2 is missing or unsupported, and the
export of a kit dataset to nnU-Net's raw format. The trainers and the MONAI loss are tested in
tests_integrations/ (`make test-integrations`)."""
import importlib.metadata
import json
import py_compile
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest

import lomix_core
from lomix_core.__main__ import main
from lomix_core.integrations import nnunet_raw, nnunet_shim, require


def test_importing_the_kit_imports_no_framework():
    code = ("import sys, lomix_core, lomix_core.integrations; "
            "print([m for m in ('monai', 'nnunetv2') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_install_is_idempotent_and_uninstall_removes_every_trace(tmp_path):
    shim, changed = nnunet_shim.install_trainers(tmp_path)
    assert changed and shim == tmp_path / nnunet_shim.SHIM_NAME and nnunet_shim.installed(tmp_path)
    assert "from lomix_core.integrations.nnunet import *" in shim.read_text()
    before = shim.stat().st_mtime_ns
    assert nnunet_shim.install_trainers(tmp_path) == (shim, False)  # the second run changes nothing
    assert shim.stat().st_mtime_ns == before and sorted(p.name for p in tmp_path.iterdir()) == [nnunet_shim.SHIM_NAME]
    compiled = py_compile.compile(str(shim), cfile=str(tmp_path / "__pycache__" / "lomix_kit_trainers.cpython-311.pyc"))
    removed = nnunet_shim.uninstall_trainers(tmp_path)
    assert set(removed) == {shim, tmp_path / "__pycache__" / "lomix_kit_trainers.cpython-311.pyc"}
    assert not shim.exists() and not any((tmp_path / "__pycache__").iterdir()) and compiled
    assert nnunet_shim.uninstall_trainers(tmp_path) == []  # and again: nothing to do


def test_an_outdated_shim_is_rewritten_and_a_foreign_file_is_never_touched(tmp_path):
    shim = tmp_path / nnunet_shim.SHIM_NAME
    shim.write_text(nnunet_shim.MARKER + ": an older version\n")
    assert nnunet_shim.install_trainers(tmp_path) == (shim, True) and nnunet_shim.installed(tmp_path)
    shim.write_text("class SomeonesTrainer: pass\n")
    with pytest.raises(FileExistsError, match="not the kit's shim"):
        nnunet_shim.install_trainers(tmp_path)
    with pytest.raises(FileExistsError, match="left in place"):
        nnunet_shim.uninstall_trainers(tmp_path)
    assert shim.read_text() == "class SomeonesTrainer: pass\n"


def test_the_shim_survives_a_missing_kit(tmp_path):
    """nnU-Net imports every module in its trainer folder: a shim whose import fails would break them all."""
    shim, _ = nnunet_shim.install_trainers(tmp_path)
    code = (f"import sys; sys.modules['lomix_core'] = None; sys.path.insert(0, {str(tmp_path)!r}); "
            f"import lomix_kit_trainers; print('imported')")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip() == "imported", result.stderr


@pytest.mark.parametrize("installed_version, expected", [
    (None, "nnunetv2 is not installed; install the extra with pip install \"lomix-kit[nnunet]\""),
    ("2.5.6", "nnunetv2 2.5.6 is not supported; expected nnunetv2>=2.8.1,<2.9"),
    ("2.9.0rc1", "nnunetv2 2.9.0rc1 is not supported"),
])
@pytest.mark.parametrize("action", ["install-trainers", "uninstall-trainers"])
def test_the_command_refuses_in_one_line(monkeypatch, capsys, installed_version, expected, action):
    real = importlib.metadata.version

    def version(name):
        if name != "nnunetv2":
            return real(name)
        if installed_version is None:
            raise importlib.metadata.PackageNotFoundError(name)
        return installed_version

    monkeypatch.setattr(importlib.metadata, "version", version)
    assert main(["nnunet", action]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {expected}") and err.count("\n") == 1


def test_version_bounds():
    assert require("numpy", "x", ("1.0", "99")) == importlib.metadata.version("numpy")
    with pytest.raises(ImportError, match=r"numpy .* is not supported; expected numpy>=99,<100"):
        require("numpy", "x", ("99", "100"))


def test_export_writes_nnunets_raw_format_with_the_kits_pixels(tmp_path):
    folder = nnunet_raw.export("brain_aal", tmp_path, dataset_id=7, size=32)
    assert folder == tmp_path / "Dataset007_brain_aal"
    meta = json.loads((folder / "dataset.json").read_text())
    train, val, test = (lomix_core.data.load("brain_aal", split=s, size=32) for s in ("train", "val", "test"))
    assert meta["labels"] == {name: i for i, name in enumerate(train.class_names)}
    assert meta["channel_names"] == {"0": "image"} and meta["file_ending"] == ".nii.gz"
    assert meta["numTraining"] == len(set(train.subjects)) + len(set(val.subjects))
    assert len(list((folder / "imagesTs").iterdir())) == len(set(test.subjects))
    folds = json.loads((folder / nnunet_raw.SPLITS_FILE).read_text())
    assert len(folds) == 1 and sorted(folds[0]["train"]) == sorted(f"brain_aal_{s}" for s in set(train.subjects))
    assert folds[0]["val"] == [f"brain_aal_{s}" for s in sorted(set(val.subjects))]
    # one case read back: the kit's slices, slices last
    subject, rows = next(iter(test.subject_slices().items()))
    image = nib.load(folder / "imagesTs" / f"brain_aal_{subject}_0000.nii.gz").get_fdata(dtype=np.float32)
    label = np.asarray(nib.load(folder / "labelsTs" / f"brain_aal_{subject}.nii.gz").dataobj)
    assert image.shape == (32, 32, len(rows)) and label.dtype == np.uint8
    np.testing.assert_array_equal(label.transpose(2, 0, 1), test.labels[rows].numpy())
    np.testing.assert_allclose(image.transpose(2, 0, 1), test.image_batch(rows)[:, 0].numpy(), atol=1e-7)
    with pytest.raises(FileExistsError, match="exists; pass overwrite=True"):
        nnunet_raw.export("brain_aal", tmp_path, dataset_id=7, size=32)
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())  # no building folder left behind


def test_export_command_and_bad_ids(tmp_path, capsys):
    assert main(["nnunet", "export", "brain_aal", str(tmp_path), "--id", "12", "--size", "32"]) == 0
    assert (tmp_path / "Dataset012_brain_aal" / "dataset.json").is_file()
    assert main(["nnunet", "export", "brain_aal", str(tmp_path), "--id", "1000"]) == 2
    assert "dataset id must be an integer in [1, 999]" in capsys.readouterr().err


def test_kit_split_goes_where_nnunet_reads_it(tmp_path):
    raw = nnunet_raw.export("brain_aal", tmp_path / "raw", dataset_id=7, size=32)
    with pytest.raises(FileNotFoundError, match="run nnUNetv2_plan_and_preprocess first"):
        nnunet_raw.use_kit_split(raw, tmp_path / "pre" / raw.name)
    (tmp_path / "pre" / raw.name).mkdir(parents=True)
    written = nnunet_raw.use_kit_split(raw, tmp_path / "pre" / raw.name)
    assert written.name == "splits_final.json"
    assert json.loads(written.read_text()) == json.loads((raw / nnunet_raw.SPLITS_FILE).read_text())
