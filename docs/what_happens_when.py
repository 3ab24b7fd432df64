"""What happens when... the kit is given bad input: every case tried, and the one line it answers with.

``python docs/what_happens_when.py`` runs every case of :data:`CASES` in a fresh temporary folder
and writes the table of messages to ``docs/what_happens_when.md`` (and prints it).
``tests/test_bad_input.py`` runs the same cases and checks each message: one line, naming the
offending value or file and what was expected (:attr:`Case.says`).

A case builds the small bad file or tensor it needs, then calls a public entry point: the loss,
a model, ``lx.data.load``, a ``data_scripts/`` script, the command line, or what a notebook does
with its parameters (PROFILE, DATASET, MODEL).
"""
from __future__ import annotations

import contextlib
import io
import json
import runpy
import sys
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere, without installing the kit
    sys.path.insert(0, str(ROOT))

import lomix_core as lx  # noqa: E402
from lomix_core.data import acdc, polyp, synapse  # noqa: E402
from lomix_core.data.images import FORMAT, pack_part  # noqa: E402
from lomix_core.data.prepared import save_volume_h5, write_manifest  # noqa: E402
from lomix_core.foundations.records import save_npz  # noqa: E402

OUTPUT = Path(__file__).with_suffix(".md")


class Reported(Exception):
    """A script or command printed this on stderr (or stdout) and exited with a nonzero status."""


@dataclass(frozen=True)
class Case:
    id: str  # a short name for the test's ids
    tried: str  # the input tried, as the table shows it
    run: Callable[[Path], object]  # tries it with files under the given empty folder; must fail
    error: type[BaseException] | tuple[type[BaseException], ...]  # what it raises
    says: tuple[str, ...]  # what the message must name: the offending value or file, and what was expected


# ---------------------------------------------------------------- small inputs

C = 5  # classes of the loss cases


def logits(num_maps: int = 4, batch: int = 2, size: int = 8) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return [torch.randn(batch, C, size, size, generator=generator) for _ in range(num_maps)]


def target(batch: int = 2, size: int = 8, **values: int) -> torch.Tensor:
    """A target in ``[0, C)``; ``at_0=5`` puts the value 5 at pixel 0."""
    out = torch.arange(batch * size * size).reshape(batch, size, size) % C
    for key, value in values.items():
        out.view(-1)[int(key.removeprefix("at_"))] = value
    return out


def with_value(maps: list[torch.Tensor], index: int, value: float) -> list[torch.Tensor]:
    maps[index][0, 0, 0, 0] = value
    return maps


@lru_cache(maxsize=1)
def pvt() -> torch.nn.Module:
    """The smallest PVT-v2 + EMCAD (random weights); built once, since importing timm takes seconds."""
    torch.manual_seed(0)
    return lx.models.build("pvt_v2_b0_emcad", in_channels=1, num_classes=2)


def unet(in_channels: int = 1) -> torch.nn.Module:
    torch.manual_seed(0)
    return lx.models.build("unet_small", in_channels=in_channels, num_classes=3, width=4)


def nifti(path: Path, array: np.ndarray) -> Path:
    import nibabel as nib

    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.asarray(array), np.eye(4)), str(path))
    return path


def png(path: Path, array: np.ndarray) -> Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(array, dtype=np.uint8)).save(path)
    return path


def truncate(path: Path) -> Path:
    """Cut ``path`` to its first half, as an interrupted download or copy leaves it."""
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    return path


def volume(shape=(4, 16, 16), classes: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """A prepared image ``[D,H,W]`` in [0, 1] and a label with a block of every class."""
    image = np.random.default_rng(0).random(shape).astype(np.float32)
    label = np.zeros(shape, np.uint8)
    for c in range(1, classes):
        label[:, 2 * c:2 * c + 2, 2:8] = c
    return image, label


def prepared(folder: Path, dataset: str, class_names, **manifest) -> Path:
    """A finished preparation: only the manifest here; the case writes the data files."""
    write_manifest(folder, {"dataset": dataset, "class_names": list(class_names), **manifest})
    return folder


def synapse_test_volume(folder: Path, image: np.ndarray, label: np.ndarray) -> Path:
    """Prepared Synapse holding one test volume, ``case0001.npy.h5``."""
    prepared(folder, "synapse", synapse.CLASS_NAMES, splits={"train": [], "val": [], "test": ["case0001"]},
             num_slices={})
    save_volume_h5(folder / "test_vol_h5" / "case0001.npy.h5", image, label)
    return folder


def acdc_test_volume(folder: Path, image: np.ndarray, label: np.ndarray) -> Path:
    """Prepared ACDC holding one test patient, both frames the same."""
    prepared(folder, "acdc", acdc.CLASS_NAMES, splits={"train": [], "val": [], "test": ["patient002"]})
    for phase in acdc.PHASES:
        save_volume_h5(folder / "volumes" / f"patient002_{phase}.h5", image, label)
    return folder


def polyp_test_set(folder: Path, images: np.ndarray, masks: np.ndarray) -> Path:
    """Prepared polyp data whose Kvasir test set holds ``images`` ``[N,3,S,S]`` and ``masks`` ``[N,S,S]``."""
    prepared(folder, "polyp", polyp.CLASS_NAMES, size=16, parts={}, **FORMAT)
    save_npz(pack_part([f"{i}" for i in range(len(images))], images, masks, list(masks)), folder / "test_Kvasir.npz")
    return folder


def photos(count: int = 2, size: int = 16) -> tuple[np.ndarray, np.ndarray]:
    masks = np.zeros((count, size, size), np.uint8)
    masks[:, 4:12, 4:12] = 1
    return np.full((count, 3, size, size), 128, np.uint8), masks


def nifti_folder(root: Path, image: np.ndarray, label: np.ndarray) -> Path:
    """A bring-your-own NIfTI folder with one test case (3 classes) holding ``image`` and ``label``."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "dataset.json").write_text(json.dumps({"labels": {"background": 0, "liver": 1, "spleen": 2},
                                                   "modality": "CT"}))
    nifti(root / "imagesTs" / "case_0000.nii.gz", image)
    nifti(root / "labelsTs" / "case.nii.gz", label)
    return root


def ct(shape=(16, 16, 3)) -> tuple[np.ndarray, np.ndarray]:
    """A CT-like NIfTI image (HU) and its label in {0, 1, 2}."""
    label = np.zeros(shape, np.uint8)
    label[2:6, 2:6], label[8:12, 8:12] = 1, 2
    return (np.choose(label, [-100, 60, 45]) + np.zeros(shape)).astype(np.int16), label


def load_nifti_test(root: Path):
    return lx.data.load("nifti", split="test", root=root, size=16)


def script(name: str, *args) -> int:
    """``python data_scripts/<name>.py ARGS``, in-process; a nonzero exit raises :class:`Reported` with its stderr."""
    main = runpy.run_path(str(ROOT / "data_scripts" / f"{name}.py"))["main"]
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        status = main([str(arg) for arg in args])
    if status:
        raise Reported(err.getvalue().rstrip("\n"))
    return status


def cli(*args) -> int:
    """``python -m lomix_core ARGS``, in-process. A nonzero exit raises :class:`Reported` with what it printed
    (for argparse's exit status 2, only its ``error:`` line, which follows the usage); an exception escapes as is."""
    from lomix_core.__main__ import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        try:
            status = main([str(arg) for arg in args])
        except SystemExit as exit:
            status = exit.code
    if status:
        text = (err.getvalue() or out.getvalue()).rstrip("\n")
        raise Reported(text.splitlines()[-1] if status == 2 else text)
    return status


TINY = json.dumps(dict(num_subjects=4, num_slices=2, size=32, num_val=1, num_test=1))


# ---------------------------------------------------------------- the cases

def _synapse_raw_label_14(tmp: Path):
    image, label = ct()
    label[0, 0, 0] = 14
    nifti(tmp / "raw" / "Training" / "img" / "img0001.nii.gz", image)
    nifti(tmp / "raw" / "Training" / "label" / "label0001.nii.gz", label)
    return script("prepare_synapse", "--raw", tmp / "raw", "--out", tmp / "out", "--cases", "case0001")


def _synapse_raw_label_mirrored(tmp: Path):
    import nibabel as nib

    image, label = ct()
    nifti(tmp / "raw" / "Training" / "img" / "img0001.nii.gz", image)
    path = tmp / "raw" / "Training" / "label" / "label0001.nii.gz"
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(label, np.diag([-1.0, 1.0, 1.0, 1.0])), str(path))  # the image's shape, x mirrored
    return script("prepare_synapse", "--raw", tmp / "raw", "--out", tmp / "out", "--cases", "case0001")


def _acdc_raw_shapes_differ(tmp: Path):
    folder = tmp / "raw" / "training" / "patient001"
    folder.mkdir(parents=True)
    (folder / "Info.cfg").write_text("ED: 1\nES: 2\n")
    nifti(folder / "patient001_frame01.nii.gz", ct((16, 16, 3))[0])
    nifti(folder / "patient001_frame01_gt.nii.gz", ct((16, 12, 3))[1])
    return script("prepare_acdc", "--raw", tmp / "raw", "--out", tmp / "out", "--patients", "patient001")


def _isic_raw_truncated_jpg(tmp: Path):
    images, masks = (tmp / "raw" / "ISIC2018_Task1-2_Training_Input", tmp / "raw" / "ISIC2018_Task1_Training_GroundTruth")
    for i in range(2):
        png(masks / f"ISIC_000000{i}_segmentation.png", np.zeros((12, 16)))
        jpg = images / f"ISIC_000000{i}.jpg"
        png(jpg.with_suffix(".png"), np.full((12, 16, 3), 200)).rename(jpg)  # PIL reads by content, not name
    truncate(images / "ISIC_0000001.jpg")
    return script("prepare_isic", "--raw", tmp / "raw", "--out", tmp / "out", "--size", 16)


def _polyp_raw_sizes_differ(tmp: Path):
    folders = [tmp / "raw" / "TrainDataset"] + [tmp / "raw" / "TestDataset" / name for name in polyp.TEST_SETS]
    for folder in folders:
        png(folder / "images" / "1.png", np.full((12, 16, 3), 200))
        png(folder / "masks" / "1.png", np.zeros((12, 16)))
    png(folders[0] / "masks" / "1.png", np.zeros((10, 10)))
    return script("prepare_polyp", "--raw", tmp / "raw", "--out", tmp / "out", "--size", 16)


def _nifti_with(image=None, label=None):
    def run(tmp: Path):
        default_image, default_label = ct()
        return load_nifti_test(nifti_folder(tmp / "mine", default_image if image is None else image(),
                                            default_label if label is None else label()))
    return run


def _ct_label_with(value: int):
    def make():
        label = ct()[1].astype(np.int16)
        label[0, 0, 0] = value
        return label
    return make


def _ct_image_with_nan():
    image = ct()[0].astype(np.float32)
    image[3, 4, 1] = np.nan
    return image


def _synapse_with(image=None, label=None):
    def run(tmp: Path):
        default_image, default_label = volume(classes=9)
        folder = synapse_test_volume(tmp / "synapse", default_image if image is None else image(),
                                     default_label if label is None else label())
        return lx.data.load("synapse", split="test", root=folder, size=16)
    return run


def _synapse_truncated_h5(tmp: Path):
    folder = synapse_test_volume(tmp / "synapse", *volume(classes=9))
    truncate(folder / "test_vol_h5" / "case0001.npy.h5")
    return lx.data.load("synapse", split="test", root=folder, size=16)


def _label_9():
    label = volume(classes=9)[1]
    label[1, 0, 0] = 9
    return label


def _image_with_inf():
    image = volume()[0]
    image[2, 5, 5] = np.inf
    return image


def _acdc_negative_label(tmp: Path):
    image, label = volume(classes=4)
    label = label.astype(np.int8)
    label[0, 0, 0] = -1
    return lx.data.load("acdc", split="test", root=acdc_test_volume(tmp / "acdc", image, label), size=16)


def _acdc_shapes_differ(tmp: Path):
    image, label = volume(classes=4)
    return lx.data.load("acdc", split="test", root=acdc_test_volume(tmp / "acdc", image, label[:, :, :12]), size=16)


def _polyp_mask_2(tmp: Path):
    images, masks = photos()
    masks[1, 0, 0] = 2
    return lx.data.load("polyp", split="test", root=polyp_test_set(tmp / "polyp", images, masks), size=16)


def _polyp_sizes_differ(tmp: Path):
    images, masks = photos()
    return lx.data.load("polyp", split="test", root=polyp_test_set(tmp / "polyp", images, masks[:, :12]), size=16)


def _polyp_truncated_npz(tmp: Path):
    folder = polyp_test_set(tmp / "polyp", *photos())
    truncate(folder / "test_Kvasir.npz")
    return lx.data.load("polyp", split="test", root=folder, size=16)


def _isic_part_missing(tmp: Path):
    folder = prepared(tmp / "isic2018", "isic2018", ("background", "lesion"), size=16, parts={"Training": 2},
                      **FORMAT)
    return lx.data.load("isic2018", split="train", root=folder, size=16)


def _polyp_old_format(tmp: Path):
    folder = prepared(tmp / "polyp", "polyp", polyp.CLASS_NAMES, size=16, parts={})  # no "format": version 1
    return lx.data.load("polyp", split="test", root=folder, size=16)


def _brain_aal_truncated(tmp: Path):
    path = tmp / "brain_aal.npz"
    save_npz({"image": np.zeros((2, 8, 8), np.uint8)}, path)
    truncate(path)
    return lx.data.load("brain_aal", split="train", path=path)


def _slices(images: torch.Tensor, labels: torch.Tensor):
    return lx.data.SliceDataset(images, labels, ["a", "a"], [0, 1], ["background", "liver", "spleen"], name="mine")


def _nan_images():
    images = torch.zeros(2, 1, 8, 8)
    images[1, 0, 2, 3] = float("nan")
    return images


def _label_3():
    labels = torch.zeros(2, 8, 8, dtype=torch.long)
    labels[1, 4, 4] = 3
    return labels


def _model_nan_input_at_loss(tmp: Path):
    model = unet()
    x = torch.rand(2, 1, 16, 16)
    x[0, 0, 5, 5] = float("nan")
    return lx.LoMixLoss(model.num_maps, 3)(model(x), torch.zeros(2, 16, 16, dtype=torch.long))


def _cli_weighting(tmp: Path):
    return cli("train", "--weighting", "magic", "--epochs", "1", "--max-steps-per-epoch", "1", "--model-kwargs",
               '{"width": 4}', "--data-kwargs", TINY, "--out-dir", tmp)


def _cli_unprepared(tmp: Path):
    return cli("train", "--dataset", "synapse", "--data-kwargs", json.dumps({"root": str(tmp / "nowhere")}),
               "--out-dir", tmp)


CASES: list[Case] = [
    # ---- the loss
    Case("loss-target-too-high", "loss: a target holding 5 with `num_classes=5`",
         lambda tmp: lx.LoMixLoss(4, C)(logits(), target(at_7=C)), ValueError, ("[0, 5)", "max 5")),
    Case("loss-target-negative", "loss: a target holding -1",
         lambda tmp: lx.LoMixLoss(4, C)(logits(), target(at_3=-1)), ValueError, ("[0, 5)", "min -1")),
    Case("loss-num-maps", "loss: `LoMixLoss(num_maps=3)` given a model's 4 maps",
         lambda tmp: lx.LoMixLoss(3, C)(logits(4), target()), ValueError,
         ("got 4 logits maps", "expected 3", "num_maps")),
    Case("loss-nan-logits", "loss: a NaN in logits map p2",
         lambda tmp: lx.LoMixLoss(4, C)(with_value(logits(), 2, float("nan")), target()), ValueError,
         ("NaN", "p2 has 1 NaN", "expected finite logits")),
    Case("loss-inf-logits", "loss: an inf in logits map p4 (deep_supervision)",
         lambda tmp: lx.LoMixLoss(4, C, "deep_supervision")(with_value(logits(), 0, float("inf")), target()),
         ValueError, ("p4 has 0 NaN and 1 inf", "expected finite logits")),
    Case("loss-one-hot-target", "loss: a one-hot float target `[B,C,H,W]`",
         lambda tmp: lx.LoMixLoss(4, C)(logits(), torch.nn.functional.one_hot(target(), C).permute(0, 3, 1, 2).float()),
         TypeError, ("integer tensor of class indices", "torch.float32")),
    Case("loss-unknown-preset", "loss: `supervision=\"lomx\"`",
         lambda tmp: lx.LoMixLoss(4, C, supervision="lomx"), ValueError, ("'lomx'", "'last_layer'", "'lomix'")),
    Case("loss-unknown-operator", "loss: `operators=[\"add\", \"max\"]`",
         lambda tmp: lx.LoMixLoss(4, C, operators=["add", "max"]), ValueError, ("['max']", "'add'", "'wf'")),
    Case("loss-unknown-weighting", "loss: `weighting=\"magic\"`",
         lambda tmp: lx.LoMixLoss(4, C, weighting="magic"), ValueError, ("'magic'", "'softplus'", "'uncertainty'")),
    # ---- the models
    Case("model-unknown", "model: `lx.models.build(\"unet_big\", 1, 9)`",
         lambda tmp: lx.models.build("unet_big", 1, 9), ValueError, ("'unet_big'", "'unet_small'", "'pvt_v2_b2_emcad'")),
    Case("model-pvt-size", "model: a 64×48 image into `pvt_v2_b0_emcad`",
         lambda tmp: pvt()(torch.zeros(1, 1, 64, 48)), ValueError,
         ("(64, 48)", "divisible by 32", "pvt_v2_b0_emcad", "(64, 32) or (64, 64)")),
    Case("model-pvt-too-small", "model: a 20×20 image into `pvt_v2_b0_emcad`",
         lambda tmp: pvt()(torch.zeros(1, 1, 20, 20)), ValueError, ("(20, 20)", "divisible by 32", "size is (32, 32)")),
    Case("model-unet-size", "model: a 60×64 image into `unet_small`",
         lambda tmp: unet()(torch.zeros(1, 1, 60, 64)), ValueError,
         ("(60, 64)", "divisible by 16", "unet_small", "(48, 64) or (64, 64)")),
    Case("model-channels", "model: an RGB batch into `unet_small` built for 1 channel",
         lambda tmp: unet(1)(torch.zeros(1, 3, 32, 32)), ValueError, ("in_channels=1", "3 channels")),
    Case("model-uint8", "model: a dataset's stored 8-bit images `dataset.images[:4]` straight into the model",
         lambda tmp: unet(1)(torch.zeros(4, 1, 32, 32, dtype=torch.uint8)), ValueError,
         ("torch.uint8", "image_batch")),
    Case("model-no-batch-axis", "model: one image `[1,H,W]` without the batch axis",
         lambda tmp: unet(1)(torch.zeros(1, 32, 32)), ValueError, ("[B, 1, H, W]", "(1, 32, 32)")),
    Case("model-nan-input", "model + loss: a NaN pixel in the input batch (the model does not look; the loss's value check does)",
         _model_nan_input_at_loss, ValueError, ("NaN", "check the inputs")),
    # ---- the loaders
    Case("data-unknown", "loader: `lx.data.load(\"synapes\")`",
         lambda tmp: lx.data.load("synapes"), ValueError, ("'synapes'", "'synapse'", "'brain_aal'")),
    Case("data-unknown-option", "loader: `lx.data.load(\"synthetic\", root=...)` (an option it does not take)",
         lambda tmp: lx.data.load("synthetic", root=tmp), ValueError, ("['root']", "'num_subjects'")),
    Case("data-size", "loader: `size=0`",
         lambda tmp: lx.data.load("synthetic", size=0), ValueError, ("size", "positive integer", "got 0")),
    Case("brain-aal-missing", "brain_aal: `path=` a file that does not exist",
         lambda tmp: lx.data.load("brain_aal", path=tmp / "none.npz"), FileNotFoundError,
         ("<tmp>/none.npz", "build_brain_aal.py")),
    Case("brain-aal-truncated", "brain_aal: a truncated .npz",
         _brain_aal_truncated, ValueError, ("cannot read <tmp>/brain_aal.npz", "--force")),
    Case("synapse-missing", "synapse: `root=` a folder that does not exist",
         lambda tmp: lx.data.load("synapse", root=tmp / "synapse"), FileNotFoundError,
         ("not found at <tmp>/synapse", "prepare_synapse.py")),
    Case("synapse-empty", "synapse: an empty folder",
         lambda tmp: (tmp / "synapse").mkdir() or lx.data.load("synapse", root=tmp / "synapse"), FileNotFoundError,
         ("<tmp>/synapse is empty", "prepare_synapse.py")),
    Case("synapse-unfinished", "synapse: a folder without `prepared.json` (an interrupted preparation)",
         lambda tmp: (tmp / "synapse" / "train_npz").mkdir(parents=True) or lx.data.load("synapse", root=tmp / "synapse"),
         FileNotFoundError, ("no prepared.json", "--force")),
    Case("synapse-truncated-h5", "synapse: a truncated .h5 test volume", _synapse_truncated_h5, ValueError,
         ("cannot read HDF5 file <tmp>/synapse/test_vol_h5/case0001.npy.h5", "--force")),
    Case("synapse-label-9", "synapse: a prepared label holding 9 (8 organs + background)",
         _synapse_with(label=_label_9), ValueError, ("case0001.npy.h5", "[0, 9]", "expected [0, 8]", "[9]")),
    Case("synapse-shapes", "synapse: a prepared image 16×16 with a 16×12 label",
         _synapse_with(label=lambda: volume(classes=9)[1][:, :, :12]), ValueError,
         ("case0001.npy.h5", "(4, 16, 16)", "(4, 16, 12)", "same D, H and W")),
    Case("synapse-inf", "synapse: an inf in a prepared image", _synapse_with(image=_image_with_inf), ValueError,
         ("case0001.npy.h5", "1 NaN or inf", "finite")),
    Case("acdc-negative-label", "acdc: a prepared label holding -1", _acdc_negative_label, ValueError,
         ("patient002_ED.h5", "[-1, 3]", "expected [0, 3]")),
    Case("acdc-shapes", "acdc: a prepared image and label of different sizes", _acdc_shapes_differ, ValueError,
         ("patient002_ED.h5", "(4, 16, 16)", "(4, 16, 12)")),
    Case("polyp-mask-2", "polyp: a prepared mask holding 2", _polyp_mask_2, ValueError,
         ("test_Kvasir.npz", "expected [0, 1]", "[2]")),
    Case("polyp-shapes", "polyp: prepared images 16×16 with masks 12×16", _polyp_sizes_differ, ValueError,
         ("test_Kvasir.npz", "(2, 3, 16, 16)", "(2, 12, 16)", "[N,S,S]")),
    Case("polyp-truncated-npz", "polyp: a truncated .npz", _polyp_truncated_npz, ValueError,
         ("cannot read <tmp>/polyp/test_Kvasir.npz", "--force")),
    Case("isic-part-missing", "isic2018: a manifest listing a part whose .npz is gone", _isic_part_missing,
         FileNotFoundError, ("<tmp>/isic2018/Training.npz is missing", "--force")),
    Case("polyp-old-format", "polyp: a folder prepared by an older kit (photos stretched)", _polyp_old_format,
         ValueError, ("<tmp>/polyp was prepared in an older format", "prepare_polyp.py", "--out <tmp>/polyp --force")),
    Case("nifti-empty", "nifti: an empty folder",
         lambda tmp: (tmp / "mine").mkdir() or lx.data.load("nifti", root=tmp / "mine"), FileNotFoundError,
         ("<tmp>/mine is empty", "lomix_core check")),
    Case("nifti-label-7", "nifti: a label file holding 7 with 3 classes in dataset.json",
         _nifti_with(label=_ct_label_with(7)), ValueError, ("labelsTs/case.nii.gz", "[0, 7]", "expected [0, 2]")),
    Case("nifti-label-negative", "nifti: a label file holding -1",
         _nifti_with(label=_ct_label_with(-1)), ValueError, ("labelsTs/case.nii.gz", "[-1, 2]", "expected [0, 2]")),
    Case("nifti-shapes", "nifti: an image 16×16×3 with a label 16×16×2",
         _nifti_with(label=lambda: ct()[1][:, :, :2]), ValueError,
         ("imagesTs/case_0000.nii.gz has shape (16, 16, 3)", "(16, 16, 2)")),
    Case("nifti-nan", "nifti: a NaN in an image", _nifti_with(image=_ct_image_with_nan), ValueError,
         ("imagesTs/case_0000.nii.gz", "1 NaN or inf", "finite")),
    Case("nifti-truncated", "nifti: a truncated .nii.gz",
         lambda tmp: load_nifti_test(truncate(nifti_folder(tmp / "mine", *ct()) / "imagesTs" / "case_0000.nii.gz").parents[1]),
         ValueError, ("cannot read NIfTI file <tmp>/mine/imagesTs/case_0000.nii.gz", "expected a valid .nii")),
    Case("slices-shapes", "SliceDataset: images 8×8 with labels 8×6",
         lambda tmp: _slices(torch.zeros(2, 1, 8, 8), torch.zeros(2, 8, 6, dtype=torch.long)), ValueError,
         ("(2, 1, 8, 8)", "(2, 8, 6)", "matching N,H,W")),
    Case("slices-label-3", "SliceDataset: a label holding 3 with 3 class names",
         lambda tmp: _slices(torch.zeros(2, 1, 8, 8), _label_3()), ValueError,
         ("slice 1 of subject 'a'", "[3]", "[0, 2]")),
    Case("slices-nan", "SliceDataset: a NaN in an image",
         lambda tmp: _slices(_nan_images(), torch.zeros(2, 8, 8, dtype=torch.long)), ValueError,
         ("slice 1 of subject 'a'", "1 NaN or inf", "finite")),
    # ---- the data scripts
    Case("script-empty-raw", "`prepare_acdc.py --raw` an empty folder",
         lambda tmp: (tmp / "raw").mkdir() or script("prepare_acdc", "--raw", tmp / "raw", "--out", tmp / "out"),
         Reported, ("error: ACDC raw data not found", "<tmp>/raw/training/patient001/Info.cfg", "creatis")),
    Case("script-label-14", "`prepare_synapse.py`: a raw label holding 14 (13 organs + background)",
         _synapse_raw_label_14, Reported, ("error: ", "label0001.nii.gz", "[0, 14]", "expected [0, 13]")),
    Case("script-mirrored", "`prepare_synapse.py`: a raw label of its image's shape, its x axis mirrored",
         _synapse_raw_label_mirrored, Reported, ("error: ", "img0001.nii.gz has direction", "(RAS)",
                                                 "label0001.nii.gz has", "(LAS)", "mirrored")),
    Case("script-shapes", "`prepare_acdc.py`: a frame 16×16×3 with a label 16×12×3", _acdc_raw_shapes_differ,
         Reported, ("error: ", "patient001_frame01.nii.gz is (16, 16, 3)", "(16, 12, 3)", "same grid")),
    Case("script-truncated-jpg", "`prepare_isic.py`: a truncated .jpg", _isic_raw_truncated_jpg, Reported,
         ("error: cannot read image <tmp>/raw/ISIC2018_Task1-2_Training_Input/ISIC_0000001.jpg",)),
    Case("script-sizes", "`prepare_polyp.py`: an image 16×12 with a mask 10×10", _polyp_raw_sizes_differ, Reported,
         ("error: ", "images/1.png is 16x12", "masks/1.png is 10x10")),
    # ---- the command line
    Case("cli-unknown-model", "`python -m lomix_core train --model unet_big`",
         lambda tmp: cli("train", "--model", "unet_big"), Reported, ("invalid choice: 'unet_big'", "'unet_small'")),
    Case("cli-unknown-weighting", "`python -m lomix_core train --weighting magic`", _cli_weighting,
         Reported, ("error: ", "'magic'", "'softplus'")),
    Case("cli-unprepared", "`python -m lomix_core train --dataset synapse` before preparing it", _cli_unprepared,
         Reported, ("error: ", "<tmp>/nowhere", "prepare_synapse.py")),
    Case("cli-bad-json", "`python -m lomix_core train --data-kwargs '{bad'`",
         lambda tmp: cli("train", "--data-kwargs", "{bad"), Reported, ("--data-kwargs", "not valid JSON", "'{bad'")),
    Case("cli-missing-checkpoint", "`python -m lomix_core evaluate` a checkpoint that does not exist",
         lambda tmp: cli("evaluate", tmp / "best.pt"), Reported, ("error: checkpoint <tmp>/best.pt does not exist",
                                                                 "written by train")),
    Case("cli-check-missing", "`python -m lomix_core check` a folder that does not exist",
         lambda tmp: cli("check", tmp / "mine"), Reported, ("<tmp>/mine is not a folder", "dataset.json")),
    # ---- the notebook parameters
    Case("notebook-profile", "notebook: `PROFILE = \"gpu\"`", lambda tmp: lx.profiles.resolve("gpu"), ValueError,
         ("'gpu'", "'smoke'", "'auto'")),
    Case("notebook-dataset", "notebook 03: `DATASET = \"synapes\"`",
         lambda tmp: lx.profiles.comparison("smoke", dataset="synapes"), ValueError, ("'synapes'", "'synapse'")),
    Case("notebook-model", "notebook 03: `MODEL = \"unet\"`",
         lambda tmp: lx.profiles.comparison("smoke", model="unet"), ValueError, ("'unet'", "'unet_small'")),
    Case("notebook-override", "notebook: `lx.profiles.demo(PROFILE, epoch=3)` (a misspelt setting)",
         lambda tmp: lx.profiles.demo("smoke", epoch=3), ValueError, ("['epoch']", "'epochs'")),
]


# ---------------------------------------------------------------- running them

def shorten(message: str, tmp: Path) -> str:
    """The message with the case's folder written ``<tmp>`` and the repository's ``<repo>``."""
    for folder, name in ((tmp.resolve(), "<tmp>"), (tmp, "<tmp>"), (ROOT, "<repo>")):
        message = message.replace(str(folder), name)
    return message


def message(error: BaseException, tmp: Path) -> str:
    """What the user reads: a script's or command's printed line as is, else ``Type: message``."""
    text = shorten(str(error), tmp)
    return text if isinstance(error, Reported) else f"{type(error).__name__}: {text}"


def attempt(case: Case) -> str:
    """Run ``case`` in a fresh temporary folder and return the message it gave."""
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        try:
            case.run(tmp)
        except case.error as error:
            return message(error, tmp)
    raise AssertionError(f"case {case.id!r} raised nothing")


def _cell(text: str) -> str:
    """``text`` verbatim in a table cell: as code, with the table's pipes escaped."""
    fence = "``" if "`" in text else "`"
    pad = " " if "`" in text else ""
    return f"{fence}{pad}{text.replace('|', chr(92) + '|')}{pad}{fence}"


def table(rows: list[tuple[str, str]]) -> str:
    lines = ["| input tried | message seen |", "|---|---|"]
    lines += [f"| {tried.replace('|', chr(92) + '|')} | {_cell(seen)} |" for tried, seen in rows]
    return "\n".join(lines) + "\n"


def main() -> int:
    rows = [(case.tried, attempt(case)) for case in CASES]
    text = ("Every public entry point answers bad input with one line naming the problem and what it expected. "
            "Generated by `python docs/what_happens_when.py` from the cases `tests/test_bad_input.py` checks; "
            "`<tmp>` is the folder a case ran in.\n\n" + table(rows))
    OUTPUT.write_text(text)
    print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
