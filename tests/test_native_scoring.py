"""The issue's acceptance test: a fake Synapse-like case at 512² is scored at its own resolution.

The kit's native-resolution Dice and HD95 must equal medpy's, computed directly at 512² between
the prediction brought back to 512 and the label volume read straight from the raw NIfTI (never
resampled). The model sees 64² slices, so the comparison fails if anything is scored on the
model grid, resampled on the way, or transposed: the last test shows the model-grid numbers
differ.
"""
import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import lomix_core as lx
from lomix_core.data import synapse
from lomix_core.data.preprocessing import native_argmax
from lomix_core.pipeline.evaluation import finest_logits, volume_metrics

medpy_binary = pytest.importorskip("medpy.metric.binary")

CASES = ("case0001", "case0002")  # both in TransUNet's test list
# case0002 lacks three organs (say, resected), so the rules for an empty ground truth are exercised too.
ORGANS = {"case0001": range(1, 9), "case0002": (1, 2, 3, 5, 6)}
SHAPE = (512, 512, 4)  # NIfTI [x, y, z]
ZOOMS = (0.68, 0.74, 3.0)  # mm along x, y, z: in-plane unequal, so a swapped order shows
SIZE = 64
HU_STEP = 40  # class c is drawn at HU -125 + 40 c: inside the [-125, 275] window, 0.1 c after scaling
# Raw label value of each kept class (spleen .. aorta), and esophagus (raw 5), which becomes background.
RAW_OF_CLASS = {1: 1, 2: 2, 3: 3, 4: 4, 5: 11, 6: 6, 7: 7, 8: 8}
ESOPHAGUS = 5


def ellipses(seed: int, organs=range(1, 9)) -> np.ndarray:
    """A raw label volume [x, y, z]: one ellipse per organ, of different sizes, drifting across slices."""
    rng = np.random.default_rng(seed)
    x, y = np.meshgrid(np.arange(SHAPE[0]), np.arange(SHAPE[1]), indexing="ij")
    label = np.zeros(SHAPE, np.uint8)
    centres = [(110, 110), (110, 260), (110, 400), (260, 110), (260, 260), (260, 400), (400, 110), (400, 260),
               (400, 400)]
    radii = [(50, 40), (30, 45), (45, 25), (22, 18), (40, 50), (50, 50), (35, 20), (16, 16), (25, 45)]
    for (cx, cy), (rx, ry), c in zip(centres, radii, list(range(1, 9)) + [0]):
        if c and c not in organs:
            continue
        raw = RAW_OF_CLASS[c] if c else ESOPHAGUS
        cx, cy = cx + rng.uniform(-5, 5), cy + rng.uniform(-5, 5)
        for z in range(SHAPE[2]):
            grow = 1 + 0.08 * np.sin(z + seed)  # organs change size and place from slice to slice
            inside = ((x - cx - 3 * z) / (rx * grow)) ** 2 + ((y - cy) / (ry * grow)) ** 2 <= 1
            label[inside, z] = raw
    return label


def make_raw(root):
    """RawData/Training with a 512x512x6 CT and label per case, spacing in the header."""
    affine = np.diag([*ZOOMS, 1.0])
    (root / "Training" / "img").mkdir(parents=True)
    (root / "Training" / "label").mkdir(parents=True)
    for seed, case in enumerate(CASES):
        label = ellipses(seed, ORGANS[case])
        classes = synapse.LABEL_MAP[label]
        image = -125 + HU_STEP * classes.astype(np.int16)  # each organ its own HU (the esophagus background's)
        number = case[4:]
        nib.save(nib.Nifti1Image(image.astype(np.int16), affine), root / "Training" / "img" / f"img{number}.nii.gz")
        nib.save(nib.Nifti1Image(label, affine), root / "Training" / "label" / f"label{number}.nii.gz")
    return root


class IntensityReader(nn.Module):
    """A fixed network that reads organs off the intensities: a pixel is foreground where it is
    brighter than 3/4 of its neighbourhood's maximum, and of the class whose intensity (0.1 c)
    is nearest that maximum.

    A deterministic, smooth function of the input, so the logits at organ edges blend as a trained
    model's do and bringing them back to 512 is a real resampling, not a copy.
    """

    def __init__(self, num_classes: int = 9):
        super().__init__()
        self.register_buffer("centres", torch.arange(num_classes, dtype=torch.float32) * HU_STEP / 400)
        self.anchor = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        brightest = F.max_pool2d(x, 5, stride=1, padding=2)
        foreground = 40 * (x - 0.75 * brightest)
        organ = -400 * (brightest - self.centres[None, :, None, None]) ** 2 + foreground
        fine = torch.cat([-foreground, organ[:, 1:]], dim=1)
        return [torch.zeros_like(fine), fine]  # the coarse map must be ignored


def raw_classes(raw, case) -> np.ndarray:
    """The case's label straight from the raw NIfTI, as classes, slices first [z, x, y]: the reference."""
    label = np.asarray(nib.load(str(raw / "Training" / "label" / f"label{case[4:]}.nii.gz")).dataobj)
    return np.transpose(synapse.LABEL_MAP[label], (2, 0, 1))


def transunet_case(pred, gt, spacing=None):
    """TransUNet's calculate_metric_percase on medpy (with the spacing when given)."""
    if pred.sum() > 0 and gt.sum() > 0:
        return medpy_binary.dc(pred, gt), medpy_binary.hd95(pred, gt, voxelspacing=spacing)
    return (1.0, 0.0) if pred.sum() > 0 else (0.0, 0.0)


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    raw = make_raw(tmp_path_factory.mktemp("synapse512") / "RawData")
    prepared = synapse.prepare(raw, tmp_path_factory.mktemp("synapse512_out") / "synapse", cases=CASES)
    dataset = lx.data.load("synapse", split="test", root=prepared, size=SIZE)
    model = IntensityReader()
    results = lx.evaluate(model, dataset, batch_size=4)
    predictions = {case: torch.cat([native_argmax(logits, (512, 512), "pad")
                                    for logits in finest_logits(model, dataset.images[indices], batch_size=4)])
                   for case, indices in dataset.subject_slices().items()}
    return raw, prepared, dataset, model, results, predictions


def test_the_manifest_and_the_dataset_keep_the_raw_spacing_and_grid(scored):
    raw, prepared, dataset, _, results, _ = scored
    manifest = json.loads((prepared / "prepared.json").read_text())
    expected = pytest.approx((ZOOMS[2], ZOOMS[0], ZOOMS[1]), abs=1e-6)  # (z, x, y), the stored [D, H, W] order
    assert set(manifest["spacing"]) == set(CASES)
    for case in CASES:
        assert tuple(manifest["spacing"][case]) == expected
        native = dataset.native_grid(case)
        assert native.spacing == expected
        assert native.shape == (512, 512) and native.labels.dtype == torch.uint8
        np.testing.assert_array_equal(native.labels.numpy(), raw_classes(raw, case))  # never resampled
    assert dataset.images.shape[-2:] == (SIZE, SIZE)
    assert results.attrs["resolution"] == "native" and dataset.resolution == "native"


def test_predictions_are_at_512_and_a_real_resampling(scored):
    _, _, dataset, model, _, predictions = scored
    for case, indices in dataset.subject_slices().items():
        pred = predictions[case]
        assert pred.shape == (SHAPE[2], 512, 512) and pred.dtype == torch.uint8
        # A square scan has no padding: bringing logits back is a plain bilinear resize, then argmax.
        logits = model(dataset.image_batch(indices))[-1]
        direct = F.interpolate(logits, size=(512, 512), mode="bilinear", align_corners=False).argmax(1)
        assert torch.equal(pred.long(), direct)
        # Finer than the model grid: not a blown-up 64² map (8x8 blocks of one class everywhere).
        blocks = pred.long().view(SHAPE[2], SIZE, 8, SIZE, 8)
        assert (blocks.amax((2, 4)) != blocks.amin((2, 4))).any()


def test_dice_and_hd95_equal_medpy_at_512(scored):
    raw, _, dataset, _, results, predictions = scored
    assert len(results) == len(CASES) * 8
    present = results.set_index(["volume", "class_index"])["gt_present"]
    assert present["case0001"].all() and present["case0002"].sum() == len(ORGANS["case0002"])
    for row in results.itertuples():
        pred = predictions[row.volume].numpy() == row.class_index
        gt = raw_classes(raw, row.volume) == row.class_index
        spacing = (ZOOMS[2], ZOOMS[0], ZOOMS[1])
        dice, hd95 = transunet_case(pred, gt)
        _, hd95_mm = transunet_case(pred, gt, spacing)
        assert row.dice == pytest.approx(dice, abs=1e-9), row
        assert row.hd95 == pytest.approx(hd95, abs=1e-6), row
        assert row.hd95_mm == pytest.approx(hd95_mm, rel=1e-5), row
    # Not a trivial agreement: the 64² model misses edges, so scores are good but not perfect.
    found = results[results["gt_present"]]
    assert 0.7 < found["dice"].min() and found["dice"].max() < 1 and (found["hd95"] > 0).all()


def test_scoring_on_the_model_grid_would_have_given_other_numbers(scored):
    _, _, dataset, model, results, _ = scored
    frames = []
    for case, indices in dataset.subject_slices().items():
        pred = torch.cat([logits.argmax(1) for logits in finest_logits(model, dataset.images[indices])])
        spacing = np.multiply(dataset.native_grid(case).spacing, (1, 512 / SIZE, 512 / SIZE))
        frames.append(volume_metrics(pred, dataset.labels[indices], dataset.num_classes, spacing=spacing))
    model_grid = pd.concat(frames, ignore_index=True)[results["gt_present"]]
    native = results[results["gt_present"]]
    # HD95 in voxels changes (a model-grid voxel is 8 of the scan's), and so does HD95 in mm, where the
    # unit is the same but the coarse voxels move the distances.
    assert (model_grid["hd95"] != native["hd95"]).mean() > 0.8
    assert abs(model_grid["hd95"].mean() - native["hd95"].mean()) > 0.5
    assert abs(model_grid["hd95_mm"].mean() - native["hd95_mm"].mean()) > 0.5
    # The model grid's labels were resampled along with the prediction, which flatters the Dice.
    assert model_grid["dice"].mean() > native["dice"].mean() + 0.01
