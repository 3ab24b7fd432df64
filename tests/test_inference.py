"""``predict`` and ``evaluate --dataset``: a model trained on one NIfTI folder, applied to another.

The issue's acceptance checks: predicted files have the inputs' shape and affine, and scoring
them against the labels gives the same Dice as ``evaluate`` on the same cases.
"""
import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch

import lomix_core as lx
from lomix_core.__main__ import main
from lomix_core.data import nifti_folder
from lomix_core.pipeline.evaluation import volume_metrics

CLASSES = {"background": 0, "liver": 1, "spleen": 2}
SPACING = (0.8, 0.9, 2.5)


@pytest.fixture(autouse=True)
def notes_unsaid():
    """The NIfTI loader says each note once per process; every test starts as a fresh process would."""
    nifti_folder._SAID.clear()


def affine():
    """A scan's own affine: spacing on the diagonal, rotated and shifted, so a copy is easy to tell apart."""
    matrix = np.diag([*SPACING, 1.0])
    matrix[:3, 3] = (-90.0, 12.5, 40.0)
    matrix[:2, :2] = [[0.0, -SPACING[1]], [SPACING[0], 0.0]]
    return matrix


def scan(shape, seed):
    """A CT-like volume in HU with a liver (1) and a spleen (2) that move from case to case."""
    rng = np.random.default_rng(seed)
    label = np.zeros(shape, np.uint8)
    x, y = rng.integers(2, 6, 2)
    label[x:x + shape[0] // 2, y:y + shape[1] // 2, 1:] = 1
    label[-12:-3, -14:-4, :-1] = 2
    image = np.choose(label, [-100, 60, 140]) + rng.normal(0, 15, shape)
    return image.astype(np.int16), label


def write_folder(root, cases, part):
    (root / f"images{part}").mkdir(parents=True, exist_ok=True)
    (root / f"labels{part}").mkdir(parents=True, exist_ok=True)
    (root / "dataset.json").write_text(json.dumps({"labels": CLASSES, "modality": "CT"}))
    for seed, (case, shape) in enumerate(cases.items()):
        image, label = scan(shape, seed + 10 * (part == "Ts"))
        for array, path in ((image, root / f"images{part}" / f"{case}_0000.nii.gz"),
                            (label, root / f"labels{part}" / f"{case}.nii.gz")):
            nifti = nib.Nifti1Image(array, affine())
            nifti.header.set_zooms(SPACING)
            nib.save(nifti, str(path))
    return root


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny model trained for 9 steps on one folder, and a test-only folder it never saw (non-square scans)."""
    tmp = tmp_path_factory.mktemp("predict")
    train_root = write_folder(tmp / "train_scans", {f"case_{i}": (40, 40, 5) for i in range(4)}, "Tr")
    write_folder(train_root, {"case_t": (40, 40, 5)}, "Ts")  # train scores its own test split at the end
    test_root = write_folder(tmp / "other_scans", {"new_a": (44, 30, 6), "new_b": (36, 52, 4)}, "Ts")
    data_kwargs = json.dumps({"root": str(train_root), "size": 32})
    assert main(["train", "--dataset", "nifti", "--data-kwargs", data_kwargs, "--model", "unet_small",
                 "--model-kwargs", '{"width": 4}', "--supervision", "deep_supervision", "--epochs", "3",
                 "--max-steps-per-epoch", "3", "--batch-size", "4", "--lr", "1e-2", "--out-dir", str(tmp / "runs"),
                 "--run-name", "toy"]) == 0
    return tmp / "runs" / "toy" / "best.pt", test_root


def test_predict_writes_the_inputs_geometry_and_scores_like_evaluate(trained, tmp_path, capsys):
    checkpoint, test_root = trained
    results_csv = tmp_path / "results.csv"
    assert main(["evaluate", str(checkpoint), "--dataset", "nifti", "--data-kwargs",
                 json.dumps({"root": str(test_root)}), "--save", str(results_csv)]) == 0
    printed = capsys.readouterr().out
    assert "native resolution" in printed and "mm" in printed
    evaluated = pd.read_csv(results_csv).set_index(["volume", "class_index"])
    assert evaluated["dice"].between(0.05, 0.999).any()  # a real prediction, not all empty or all perfect

    out = tmp_path / "labels"
    assert main(["predict", str(checkpoint), str(test_root / "imagesTs"), str(out), "--quiet"]) == 0
    for case in ("new_a", "new_b"):
        source = nib.load(str(test_root / "imagesTs" / f"{case}_0000.nii.gz"))
        written = nib.load(str(out / f"{case}.nii.gz"))
        assert written.shape == source.shape and np.array_equal(written.affine, source.affine)
        assert written.get_data_dtype() == np.uint8
        truth = np.asarray(nib.load(str(test_root / "labelsTs" / f"{case}.nii.gz")).dataobj)
        prediction = np.asarray(written.dataobj)
        scored = volume_metrics(torch.from_numpy(prediction), torch.from_numpy(truth), 3, spacing=SPACING)
        for row in scored.itertuples():
            assert row.dice == pytest.approx(evaluated.loc[(case, row.class_index), "dice"], abs=1e-12)
            # The header stores the spacing as float32, so mm agree to its precision.
            assert row.hd95_mm == pytest.approx(evaluated.loc[(case, row.class_index), "hd95_mm"], rel=1e-6)
        sidecar = json.loads((out / f"{case}.json").read_text())
        assert sidecar["class_names"] == {"0": "background", "1": "liver", "2": "spleen"}
        assert sidecar["label_map"] == f"{case}.nii.gz" and sidecar["tta"] is False
    assert not list(out.glob(".*.tmp"))  # every file written whole


def test_predict_skips_finished_cases_and_accepts_one_file(trained, tmp_path):
    checkpoint, test_root = trained
    out = tmp_path / "labels"
    lx.inference.predict_files(checkpoint, test_root / "imagesTs", out, progress=False)
    stamp = (out / "new_a.nii.gz").stat().st_mtime_ns
    lx.inference.predict_files(checkpoint, test_root / "imagesTs", out, progress=False)
    assert (out / "new_a.nii.gz").stat().st_mtime_ns == stamp  # same checkpoint and options: not redone
    lx.inference.predict_files(checkpoint, test_root / "imagesTs", out, tta=True, progress=False)
    assert json.loads((out / "new_a.json").read_text())["tta"] is True  # other options: redone
    single = lx.inference.predict_files(checkpoint, test_root / "imagesTs" / "new_b_0000.nii.gz", tmp_path / "one",
                                        progress=False)
    assert [p.name for p in single] == ["new_b.nii.gz"]


def test_lx_predict_takes_a_volume_in_file_order(trained):
    checkpoint, test_root = trained
    model = lx.load_checkpoint(checkpoint, device="cpu")
    volume = np.asarray(nib.load(str(test_root / "imagesTs" / "new_a_0000.nii.gz")).dataobj)
    labels = lx.predict(model, volume)
    assert labels.shape == volume.shape and labels.dtype == np.uint8 and labels.max() <= 2
    flipped = lx.predict(model, volume, tta=True)
    assert flipped.shape == volume.shape
    with pytest.raises(ValueError, match="channels; the model expects 1"):
        lx.predict(model, np.stack([volume, volume]))
    bad = volume.astype(np.float32)
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN or inf"):
        lx.predict(model, bad)


def test_2d_images_in_and_out(trained, tmp_path):
    from PIL import Image

    checkpoint, _ = trained
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (30, 45), dtype=np.uint8)).save(folder / "a.png")
    written = lx.inference.predict_files(checkpoint, folder, tmp_path / "out", progress=False)
    with Image.open(written[0]) as label_map:
        assert label_map.size == (45, 30) and label_map.mode == "L"


def test_bad_inputs_give_one_line(trained, tmp_path, capsys):
    checkpoint, test_root = trained
    (tmp_path / "empty").mkdir()
    for argv, expected in [
        (["predict", str(tmp_path / "missing.pt"), str(test_root), str(tmp_path / "o")], "does not exist"),
        (["predict", str(checkpoint), str(tmp_path / "empty"), str(tmp_path / "o")], "no .nii/.nii.gz files"),
        (["evaluate", str(checkpoint), "--dataset", "brain_aal"], "same classes"),
    ]:
        assert main(argv) == 2
        error = capsys.readouterr().err.strip()
        assert expected in error and "\n" not in error
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "x.nii.gz").write_bytes(b"\x1f\x8b not really gzip")
    assert main(["predict", str(checkpoint), str(corrupt), str(tmp_path / "o2")]) == 2
    assert "cannot read NIfTI file" in capsys.readouterr().err
    assert not (tmp_path / "o2" / "x.nii.gz").exists()
    torch.save({"config": {}, "model": {}}, tmp_path / "old.pt")
    assert main(["predict", str(tmp_path / "old.pt"), str(test_root), str(tmp_path / "o3")]) == 2
    assert "records no preprocessing" in capsys.readouterr().err


def test_a_raw_ras_head_is_predicted_exactly_as_brain_aal_is_scored(tmp_path):
    """brain_aal's slices are radiological views of a RAS file, scaled by the head's maximum and stored
    8-bit: predict must redo all of it on a raw volume. Rebuilt from the test slabs (with the head's
    brightest value, 255, in one corner voxel), it gives evaluate's Dice class for class."""
    from lomix_core.data import brain_aal
    from lomix_core.data.preprocessing import Preprocessing

    config = lx.TrainConfig(dataset="brain_aal", supervision="last_layer", epochs=1, max_steps_per_epoch=3,
                            batch_size=4, lr=3e-3, data_kwargs={"size": 32}, model_kwargs={"width": 4},
                            out_dir=str(tmp_path), progress=False)
    run = lx.train(config)
    trained = lx.load_checkpoint(run.run_dir / "best.pt", device="cpu")
    assert trained.preprocessing.orientation == "radiological" and trained.preprocessing.eight_bit
    results = lx.evaluate(trained.model, lx.data.load("brain_aal", split="test", size=32))
    arrays = brain_aal._arrays(str(brain_aal.DATASET_FILE))
    radiological = Preprocessing(size=32, class_names=brain_aal.CLASS_NAMES, orientation="radiological")
    for name, rows in brain_aal.slabs("test").items():
        image, label = brain_aal.unpad(arrays["image"][rows]), brain_aal.unpad(arrays["label"][rows])
        raw = radiological.unslice(image).astype(np.float32)  # [x, y, z] as the RAS file stores it
        raw[0, 0, 0] = 255
        labels = lx.predict(trained, raw)
        assert labels.shape == raw.shape
        scored = volume_metrics(torch.from_numpy(radiological.slices(labels)), torch.from_numpy(label), 8)
        expected = results[results.volume == name].set_index("class_index")["dice"]
        assert scored.set_index("class_index")["dice"].tolist() == pytest.approx(expected.tolist(), abs=1e-12)


def test_a_nifti_folder_can_be_read_as_another_dataset_was(tmp_path):
    """orientation= and intensity= make a NIfTI folder of RAS heads look as brain_aal does."""
    from lomix_core.data import brain_aal
    from lomix_core.data.preprocessing import Preprocessing

    arrays = brain_aal._arrays(str(brain_aal.DATASET_FILE))
    radiological = Preprocessing(size=32, class_names=brain_aal.CLASS_NAMES, orientation="radiological")
    root = tmp_path / "heads"
    (root / "imagesTs").mkdir(parents=True)
    (root / "labelsTs").mkdir()
    (root / "dataset.json").write_text(json.dumps({"labels": {n: i for i, n in enumerate(brain_aal.CLASS_NAMES)},
                                                   "modality": "MRI"}))
    rows = brain_aal.slabs("test")["slab_2"]
    image = radiological.unslice(brain_aal.unpad(arrays["image"][rows])).astype(np.float32)
    image[0, 0, 0] = 255
    nib.save(nib.Nifti1Image(image, np.eye(4)), str(root / "imagesTs" / "slab_2_0000.nii.gz"))
    nib.save(nib.Nifti1Image(radiological.unslice(brain_aal.unpad(arrays["label"][rows])), np.eye(4)),
             str(root / "labelsTs" / "slab_2.nii.gz"))
    folder = lx.data.load("nifti", split="test", root=root, size=32, orientation="radiological",
                          intensity={"kind": "max"})
    brain = lx.data.load("brain_aal", split="test", size=32)
    ours, theirs = folder.subject_slices()["slab_2"], brain.subject_slices()["slab_2"]
    assert torch.equal(folder.labels[ours], brain.labels[theirs])
    assert torch.equal(folder.native_grid("slab_2").labels, brain.native_grid("slab_2").labels)
    # brain_aal keeps its images 8-bit after resizing, the folder floats: equal to within that rounding
    # (slice 0 is left out: it holds the added 255 voxel)
    assert (folder.image_batch(ours[1:]) - brain.image_batch(theirs[1:])).abs().max() <= 0.5 / 255 + 1e-6
    with pytest.raises(ValueError, match="unknown intensity kind 'loud'"):
        lx.data.load("nifti", split="test", root=root, intensity={"kind": "loud"})


def test_last_pt_loads_too(trained):
    """last.pt (the last epoch, written for resuming) carries the preprocessing as best.pt does."""
    checkpoint, test_root = trained
    best, last = lx.load_checkpoint(checkpoint, device="cpu"), lx.load_checkpoint(checkpoint.parent / "last.pt", "cpu")
    assert last.preprocessing == best.preprocessing and last.digest != best.digest
    volume = np.asarray(nib.load(str(test_root / "imagesTs" / "new_a_0000.nii.gz")).dataobj)
    assert lx.predict(last, volume).shape == volume.shape


def test_one_labelled_scan_trains_from_the_cli_and_predicts_and_scores_another(tmp_path, capsys):
    """The paper's lowest-data regime as a user meets it: one labelled scan, no test split."""
    one = write_folder(tmp_path / "one_scan", {"only": (40, 40, 16)}, "Tr")
    other = write_folder(tmp_path / "other", {"new": (40, 40, 8)}, "Ts")
    tiny = ["--dataset", "nifti", "--model", "unet_small", "--model-kwargs", '{"width": 4}', "--supervision",
            "deep_supervision", "--epochs", "2", "--max-steps-per-epoch", "2", "--batch-size", "4",
            "--out-dir", str(tmp_path / "runs")]
    assert main(["train", "--data-kwargs", json.dumps({"root": str(one), "size": 32}), "--run-name", "slab",
                 *tiny]) == 0
    printed = capsys.readouterr().out
    assert "1 training case(s), too few to hold whole cases out" in printed
    assert "slab: best epoch" in printed and "val Dice" in printed and "no test split" in printed
    record = json.loads((tmp_path / "runs" / "slab" / "record.json").read_text())
    assert record["metrics"]["selected_on"] == "validation Dice" and record["metrics"]["test_dice"] is None

    assert main(["train", "--data-kwargs", json.dumps({"root": str(one), "size": 32, "num_val": 0}),
                 "--run-name", "all", *tiny]) == 0
    printed = capsys.readouterr().out
    assert "num_val=0: no validation split" in printed and "last epoch 2 (no validation split)" in printed

    checkpoint = tmp_path / "runs" / "slab" / "best.pt"
    assert main(["evaluate", str(checkpoint), "--dataset", "nifti", "--data-kwargs",
                 json.dumps({"root": str(other)})]) == 0
    assert "mean Dice (nifti, test, native resolution)" in capsys.readouterr().out
    assert main(["predict", str(checkpoint), str(other / "imagesTs"), str(tmp_path / "labels"), "--quiet"]) == 0
    written = nib.load(str(tmp_path / "labels" / "new.nii.gz"))
    assert written.shape == (40, 40, 8) and np.asarray(written.dataobj).max() <= 2


def reoriented(image, codes):
    """``image`` (a nibabel image) stored in the voxel orientation ``codes``: the same scan, other array and affine."""
    from nibabel.orientations import aff2axcodes, axcodes2ornt, ornt_transform

    return image.as_reoriented(ornt_transform(axcodes2ornt(aff2axcodes(image.affine)), axcodes2ornt(tuple(codes))))


@pytest.fixture(scope="module")
def segmenting(trained, tmp_path_factory):
    """A model that finds the organs (75 steps: about 90% of voxels right), since the toy model's 9 steps
    paint one class everywhere, which looks the same in every orientation."""
    train_root = trained[0].parents[2] / "train_scans"
    out = tmp_path_factory.mktemp("segmenting")
    assert main(["train", "--dataset", "nifti", "--data-kwargs", json.dumps({"root": str(train_root), "size": 32}),
                 "--model", "unet_small", "--model-kwargs", '{"width": 8}', "--supervision", "deep_supervision",
                 "--epochs", "15", "--max-steps-per-epoch", "5", "--batch-size", "8", "--lr", "1e-2",
                 "--out-dir", str(out), "--run-name", "seg"]) == 0
    return out / "seg" / "best.pt"


def test_a_scan_in_any_voxel_orientation_gets_the_same_labels_written_in_its_own_grid(trained, segmenting,
                                                                                       tmp_path, capsys):
    _, test_root = trained
    model = lx.load_checkpoint(segmenting, device="cpu")
    assert model.preprocessing.axcodes == "ALS"  # the training scans' (the fixture's rotated affine)
    assert model.preprocessing.spacing == pytest.approx((SPACING[0], SPACING[1]))
    original = nib.load(str(test_root / "imagesTs" / "new_a_0000.nii.gz"))
    orientations = ("ALS", "RAS", "LPS", "PLS", "SRA")  # SRA: the slice axis first
    folder = tmp_path / "orientations"
    folder.mkdir()
    for codes in orientations:
        nib.save(reoriented(original, codes), str(folder / f"as_{codes}_0000.nii.gz"))
    lx.inference.predict_files(model, folder, tmp_path / "labels", progress=False)
    printed = capsys.readouterr().out
    reference = None
    for codes in orientations:
        written = nib.load(str(tmp_path / "labels" / f"as_{codes}.nii.gz"))
        stored = nib.load(str(folder / f"as_{codes}_0000.nii.gz"))
        assert written.shape == stored.shape and np.allclose(written.affine, stored.affine)  # the input's own grid
        labels = np.asarray(reoriented(written, "ALS").dataobj)
        reference = labels if reference is None else reference
        assert (labels == reference).mean() >= 0.99, codes
        note = f"predict: as_{codes}: note: stored {codes}, reoriented to ALS as the training data were"
        assert (note in printed) == (codes != "ALS")
        sidecar = json.loads((tmp_path / "labels" / f"as_{codes}.json").read_text())
        assert sidecar["reoriented"] == (None if codes == "ALS" else {"stored": codes, "predicted_in": "ALS"})
    truth = np.asarray(nib.load(str(test_root / "labelsTs" / "new_a.nii.gz")).dataobj)
    assert (reference == truth).mean() > 0.8  # a model that segments, not one class everywhere

    # Without the affine the array is taken as stored in the training orientation: the scan stored LPS comes
    # back wrong, which is what every orientation did before the checkpoint recorded one.
    lps = nib.load(str(folder / "as_LPS_0000.nii.gz"))
    blind = np.asarray(reoriented(nib.Nifti1Image(lx.predict(model, np.asarray(lps.dataobj)), lps.affine), "ALS").dataobj)
    assert (blind == reference).mean() < 0.99


def test_evaluate_scores_a_folder_stored_in_another_orientation_as_the_original(trained, tmp_path, capsys):
    checkpoint, test_root = trained
    lps = tmp_path / "lps"
    for part in ("imagesTs", "labelsTs"):
        (lps / part).mkdir(parents=True)
        for path in (test_root / part).iterdir():
            nib.save(reoriented(nib.load(str(path)), "LPS"), str(lps / part / path.name))
    (lps / "dataset.json").write_text((test_root / "dataset.json").read_text())
    scores = {}
    for name, root in (("original", test_root), ("lps", lps)):
        assert main(["evaluate", str(checkpoint), "--dataset", "nifti", "--data-kwargs", json.dumps({"root": str(root)}),
                     "--save", str(tmp_path / f"{name}.csv")]) == 0
        scores[name] = pd.read_csv(tmp_path / f"{name}.csv")
    assert "stored LPS, reoriented to ALS as every case is" in capsys.readouterr().out
    pd.testing.assert_series_equal(scores["original"]["dice"], scores["lps"]["dice"])
