"""brain_aal: the embedded dataset loads offline, its split keeps slabs apart, and the build
script turns mricron-data files (a folder or a .deb) into the same arrays."""
import gzip
import io
import tarfile
from pathlib import Path

import numpy as np
import torch
import pytest

import lomix_core as lx
from lomix_core.data import brain_aal
from script_helpers import run_script, script_error

nib = pytest.importorskip("nibabel")


# ------------------------------------------------------------------ the shipped file

@pytest.mark.parametrize("split,slices,slabs", [("train", 83, 7), ("val", 12, 1), ("test", 24, 2)])
def test_embedded_dataset_loads_offline(split, slices, slabs):
    dataset = lx.data.load("brain_aal", split=split, size=64)
    assert len(dataset) == slices and len(set(dataset.subjects)) == slabs
    assert dataset.images.shape == (slices, 1, 64, 64) and dataset.labels.shape == (slices, 64, 64)
    assert dataset.class_names == brain_aal.CLASS_NAMES and dataset.num_classes == 8
    assert dataset.images.dtype == torch.uint8 and dataset.labels.dtype == torch.uint8  # compact: 8-bit source
    assert 0.0 <= dataset.image_batch(0).min() and dataset.image_batch(0).max() <= 1.0
    assert int(dataset.labels.max()) <= 7


def test_splits_are_slabs_separated_by_gaps():
    with np.load(brain_aal.DATASET_FILE) as archive:
        z, slab = archive["z"], archive["slab"]
    by_split = {split: z[np.isin(slab, ids)] for split, ids in brain_aal.SPLIT_SLABS.items()}
    for a in by_split:
        for b in by_split:
            if a != b:
                nearest = np.abs(by_split[a][:, None] - by_split[b][None, :]).min()
                assert nearest > brain_aal.GAP, (a, b, nearest)  # never adjacent, never the same slice
    assert sorted(k for ids in brain_aal.SPLIT_SLABS.values() for k in ids) == list(range(brain_aal.NUM_SLABS))


def test_validation_holds_every_class_and_test_holds_them_together():
    for split in ("val", "test"):
        present = set(lx.data.load("brain_aal", split=split, size=224).labels.unique().tolist())
        assert present == set(range(8)), split


def test_every_aal_region_maps_to_exactly_one_class():
    with np.load(brain_aal.DATASET_FILE) as archive:
        names, classes = archive["region_names"].tolist(), archive["region_class"]
    assert len(names) == 116
    np.testing.assert_array_equal(brain_aal.region_classes(names), classes)
    assert set(classes.tolist()) == set(range(1, 8))  # every lobe class receives regions
    with pytest.raises(ValueError, match="matches 0 classes"):
        brain_aal.region_classes(["Nucleus_Accumbens_L"])


def test_low_data_subsets_take_whole_slabs_by_seed():
    full = lx.data.load("brain_aal", split="train", size=32)
    picks = {seed: lx.data.load("brain_aal", split="train", size=32, num_train_subjects=2, split_seed=seed)
             for seed in range(4)}
    for subset in picks.values():
        kept = set(subset.subjects)
        assert len(kept) == 2
        assert len(subset) == sum(s in kept for s in full.subjects)  # every slice of a kept slab
    assert len({tuple(sorted(set(p.subjects))) for p in picks.values()}) > 1
    with pytest.raises(ValueError, match=r"num_train_subjects must be in \[1, 7\]"):
        lx.data.load("brain_aal", split="train", num_train_subjects=8)


# ------------------------------------------------------------------ building from source files

SHAPE = (20, 24, 60)  # x, y, z: small, but tall enough for 10 slabs with gaps


def fake_sources(folder: Path) -> Path:
    """ch2.nii.gz, aal.nii.gz and aal.nii.txt like mricron-data's, on a tiny grid."""
    rng = np.random.default_rng(0)
    head = rng.integers(0, 200, SHAPE).astype(np.uint8)
    atlas = np.zeros(SHAPE, dtype=np.uint8)
    atlas[4:16, 5:19, 5:55] = rng.choice([1, 2, 43, 71, 95, 116], size=(12, 14, 50))
    names = {1: "Precentral_L", 2: "Precentral_R", 43: "Calcarine_L", 71: "Caudate_L", 95: "Cerebelum_3_L",
             116: "Vermis_10"}
    folder.mkdir(parents=True, exist_ok=True)
    for name, volume in (("ch2.nii.gz", head), ("aal.nii.gz", atlas)):
        nib.save(nib.Nifti1Image(volume, np.eye(4)), str(folder / name))
    # CRLF and a trailing blank line, as in the real file.
    (folder / "aal.nii.txt").write_bytes("".join(f"{v} {n} {2000 + v}\r\n" for v, n in names.items()).encode()
                                         + b"\r\n")
    return folder


def ar_member(name: str, body: bytes) -> bytes:
    header = f"{name + '/':<16}{0:<12}{0:<6}{0:<6}{100644:<8}{len(body):<10}`\n".encode()
    return header + body + (b"\n" if len(body) % 2 else b"")


def fake_deb(folder: Path, out: Path) -> Path:
    """A minimal Debian package: debian-binary, then data.tar.xz holding the templates folder."""
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w:xz") as tar:
        for name in brain_aal.SOURCE_FILES:
            tar.add(folder / name, arcname=f"./usr/share/mricron/templates/{name}")
    out.write_bytes(b"!<arch>\n" + ar_member("debian-binary", b"2.0\n") + ar_member("data.tar.xz", data.getvalue()))
    return out


def test_build_from_folder_and_from_deb_give_the_same_dataset(tmp_path, capsys):
    sources = fake_sources(tmp_path / "templates")
    from_folder = brain_aal.build(sources, tmp_path / "a.npz")
    from_deb = brain_aal.build(fake_deb(sources, tmp_path / "mricron-data_1.0_all.deb"), tmp_path / "b.npz")
    with np.load(from_folder) as a, np.load(from_deb) as b:
        assert a.files == b.files
        for key in a.files:
            np.testing.assert_array_equal(a[key], b[key])
        assert a["image"].shape == (50, 224, 224) and a["image"].dtype == np.uint8
        assert set(np.unique(a["label"]).tolist()) == {0, 1, 4, 6, 7}  # frontal, occipital, deep grey, cerebellum
        assert (a["slab"] >= 0).sum() == 50 - 9 * brain_aal.GAP


def test_build_orients_slices_radiologically(tmp_path):
    sources = fake_sources(tmp_path / "templates")
    atlas = np.zeros(SHAPE, dtype=np.uint8)
    atlas[:, :, 5:55] = 95                       # cerebellum everywhere ...
    atlas[SHAPE[0] - 1, SHAPE[1] - 1, 5:55] = 1  # ... but frontal at the right (+x), anterior (+y) corner
    nib.save(nib.Nifti1Image(atlas, np.eye(4)), str(sources / "aal.nii.gz"))
    with np.load(brain_aal.build(sources, tmp_path / "o.npz")) as built:
        plane = built["label"][0]
    rows, cols = np.nonzero(plane == 1)
    top, left = (224 - SHAPE[1]) // 2, (224 - SHAPE[0]) // 2
    assert (rows[0], cols[0]) == (top, left)  # anterior at the top, patient's right on the image left


def test_build_is_idempotent_and_force_rebuilds(tmp_path, capsys):
    sources = fake_sources(tmp_path / "templates")
    out = brain_aal.build(sources, tmp_path / "d.npz")
    stamp = out.stat().st_mtime_ns
    brain_aal.build(sources, out)
    assert out.stat().st_mtime_ns == stamp and "already built" in capsys.readouterr().out
    brain_aal.build(sources, out, force=True)
    assert out.stat().st_mtime_ns != stamp
    assert not list(tmp_path.glob("*.tmp"))


def test_loader_reads_a_built_file(tmp_path):
    out = brain_aal.build(fake_sources(tmp_path / "templates"), tmp_path / "e.npz")
    test = brain_aal.load_brain_aal("test", size=32, path=out)
    assert set(test.subjects) == {"slab_2", "slab_5"} and test.images.shape[1:] == (1, 32, 32)


def test_build_errors_name_the_problem(tmp_path):
    sources = fake_sources(tmp_path / "templates")
    with pytest.raises(FileNotFoundError, match="neither a folder nor a .deb.*mricron-data"):
        brain_aal.build(tmp_path / "nowhere", tmp_path / "x.npz")
    (sources / "aal.nii.txt").unlink()
    with pytest.raises(FileNotFoundError, match=r"lacks \['aal.nii.txt'\]"):
        brain_aal.build(sources, tmp_path / "x.npz")
    sources = fake_sources(tmp_path / "t2")
    blob = (sources / "ch2.nii.gz").read_bytes()
    (sources / "ch2.nii.gz").write_bytes(gzip.compress(gzip.decompress(blob)[:200]))  # truncated volume
    with pytest.raises(ValueError, match="cannot read ch2.nii.gz"):
        brain_aal.build(sources, tmp_path / "x.npz")
    (tmp_path / "not.deb").write_bytes(b"PK\x03\x04 a zip file")
    with pytest.raises(ValueError, match="not a .deb"):
        brain_aal.build(tmp_path / "not.deb", tmp_path / "x.npz")
    with pytest.raises(FileNotFoundError, match="build_brain_aal.py"):
        brain_aal.load_brain_aal("train", path=tmp_path / "missing.npz")


def test_script_help_and_end_to_end(tmp_path, capsys):
    shown = run_script("build_brain_aal", "--help")
    assert shown.returncode == 0 and "mricron-data" in shown.stdout and "--source" in shown.stdout
    sources = fake_sources(tmp_path / "templates")
    out = tmp_path / "f.npz"
    done = run_script("build_brain_aal", "--source", sources, "--out", out)
    assert done.returncode == 0 and out.is_file(), done.stderr
    assert "neither a folder nor a .deb" in script_error("build_brain_aal", capsys, "--source", tmp_path / "none",
                                                         "--out", out, "--force")


def test_checkpoints_record_the_atlas_s_ras_order_and_1_mm_pixels():
    steps = lx.data.load("brain_aal", split="val", size=48).preprocessing
    assert steps.axcodes == "RAS" and steps.spacing == (1.0, 1.0)
    # predict turns a scan stored LAS (x flipped) to RAS before slicing, and says so
    volume, las = np.zeros((20, 24, 3), np.float32), np.diag([-1.0, 1.0, 1.0, 1.0])
    turn = lx.inference._reorientation(steps, volume, las, "head")
    assert (turn.source, turn.target) == ("LAS", "RAS")
    np.testing.assert_array_equal(turn.apply(np.arange(20.0)[:, None, None] * np.ones((20, 24, 3))),
                                  np.arange(19.0, -1, -1)[:, None, None] * np.ones((20, 24, 3)))
