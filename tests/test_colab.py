"""The kit on Colab: one repository behind every badge and install line, the notebooks' first cell
on a (faked) Colab runtime and elsewhere, and the freeze comparison of `make test-colab`."""
import json
import runpy
import shutil
import sys
from pathlib import Path

import pytest
import torch

from lomix_core import colab, reproduce
from lomix_core.__main__ import main

CHECKOUT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((CHECKOUT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def first_code_cell(path: Path) -> str:
    return next("".join(c["source"]) for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code")


# ---- one repository ----------------------------------------------------------------------------
def test_every_badge_and_install_line_uses_the_one_repository():
    home = colab.repository(CHECKOUT)
    assert home == "lomix-kit/lomix-kit" and len(NOTEBOOKS) == 9
    assert colab.link_problems(CHECKOUT) == []  # each notebook: a badge to itself and an install line, all to home
    readme = (CHECKOUT / "README.md").read_text()
    assert [m["repo"] for m in colab.INSTALL.finditer(readme)] and {m["repo"] for m in colab.INSTALL.finditer(readme)} == {home}


def test_every_notebook_has_the_same_first_cell_and_asks_colab_for_a_t4():
    cells = {first_code_cell(path) for path in NOTEBOOKS}
    assert len(cells) == 1 and 'os.environ.get("LOMIX_INSTALL_SOURCE"' in cells.pop()
    for path in NOTEBOOKS:
        metadata = json.loads(path.read_text())["metadata"]
        assert metadata["accelerator"] == "GPU" and metadata["colab"]["gpuType"] == "T4", path.name


@pytest.fixture
def copy_of_checkout(tmp_path):
    shutil.copy(CHECKOUT / "pyproject.toml", tmp_path)
    shutil.copy(CHECKOUT / "README.md", tmp_path)
    shutil.copytree(CHECKOUT / "notebooks", tmp_path / "notebooks", ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    shutil.copytree(CHECKOUT / "docs", tmp_path / "docs")
    return tmp_path


def test_colab_links_points_every_link_at_a_fork_and_changes_nothing_else(copy_of_checkout, capsys):
    before = {p: p.read_text() for p in [copy_of_checkout / "pyproject.toml", *colab.linked_files(copy_of_checkout)]}
    assert main(["colab-links", "a-student/my-lomix", "--checkout", str(copy_of_checkout)]) == 0
    out = capsys.readouterr().out
    assert "lomix-kit/lomix-kit -> a-student/my-lomix: rewrote pyproject.toml, README.md, " in out
    assert "colab.md" in out and "00_quickstart.ipynb" in out  # the docs' Colab page and every chapter
    assert colab.repository(copy_of_checkout) == "a-student/my-lomix" and colab.link_problems(copy_of_checkout) == []
    for path, text in before.items():
        after = path.read_text()
        assert "lomix-kit/lomix-kit" not in after and after.replace("a-student/my-lomix", "lomix-kit/lomix-kit") == text
        if path.suffix == ".ipynb":
            json.loads(after)


def test_a_stale_link_and_a_bad_repository_name_are_named(copy_of_checkout):
    chapter = copy_of_checkout / "notebooks" / "03_supervision_comparison.ipynb"
    chapter.write_text(chapter.read_text().replace("github/lomix-kit/lomix-kit/blob/main/notebooks/03_",
                                                   "github/someone/else/blob/main/notebooks/03_"))
    (problem,) = colab.link_problems(copy_of_checkout)
    assert problem.startswith("03_supervision_comparison.ipynb: https://colab.research.google.com/github/someone/else/")
    assert problem.endswith("names someone/else, not lomix-kit/lomix-kit")
    chapter = copy_of_checkout / "notebooks" / "04_low_data_ablation.ipynb"
    chapter.write_text(chapter.read_text().replace("blob/main/notebooks/04_low_data_ablation", "blob/main/notebooks/04_old"))
    assert colab.link_problems(copy_of_checkout)[1:] == [
        "04_low_data_ablation.ipynb: its badge opens notebooks/04_old.ipynb, which is not in the checkout",
        "04_low_data_ablation.ipynb: no Colab badge that opens notebooks/04_low_data_ablation.ipynb"]
    chapter = copy_of_checkout / "notebooks" / "07_benchmarks.ipynb"
    page = "https://github.com/lomix-kit/lomix-kit/blob/main/README.md#profiles-and-parameters"
    assert page in chapter.read_text()  # the chapters link the README's parameters where Colab can open it
    chapter.write_text(chapter.read_text().replace(page, "../README.md#profiles-and-parameters")
                       .replace("## What next", "## What next [old](https://github.com/lomix-kit/lomix-kit/blob/main/OLD.md)"))
    assert colab.link_problems(copy_of_checkout)[3:] == [
        "07_benchmarks.ipynb: its link opens OLD.md, which is not in the checkout",
        "07_benchmarks.ipynb: the relative link ../README.md#profiles-and-parameters opens nothing on Colab; link "
        f"{page} instead"]
    with pytest.raises(ValueError, match=r"repository 'my-lomix' is not OWNER/REPO \(e.g. my-name/lomix-kit\)"):
        colab.set_repository("my-lomix", copy_of_checkout)
    with pytest.raises(FileNotFoundError, match="no pyproject.toml in"):
        colab.repository(copy_of_checkout / "notebooks")


# ---- the first cell on Colab and elsewhere -----------------------------------------------------
STUB_DRIVE = '''
from pathlib import Path

calls = []


def mount(mountpoint):
    calls.append(mountpoint)
    if Path(mountpoint).name == "declined":
        raise ValueError("mount failed: the user declined")
    (Path(mountpoint) / "MyDrive").mkdir(parents=True)
'''


@pytest.fixture
def fake_colab(tmp_path, monkeypatch):
    """``google.colab`` importable, as in a Colab runtime, with a ``drive.mount`` that makes the folder;
    no GPU; Drive is mounted under tmp_path; the kit's variables unset."""
    stub = tmp_path / "stub" / "google" / "colab"
    stub.mkdir(parents=True)
    (stub / "__init__.py").write_text("")
    (stub / "drive.py").write_text(STUB_DRIVE)
    monkeypatch.syspath_prepend(str(tmp_path / "stub"))
    for name in [m for m in sys.modules if m == "google" or m.startswith("google.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(colab, "DRIVE", tmp_path / "drive")
    for name in ("LOMIX_OUTPUT_DIR", "LOMIX_DATA", "LOMIX_HEADLESS"):
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    yield tmp_path
    for name in [m for m in sys.modules if m == "google" or m.startswith("google.")]:
        del sys.modules[name]


def run_first_cell(path=NOTEBOOKS[0]) -> None:
    exec(compile(first_code_cell(path), f"{path.name}, first code cell", "exec"), {})


def test_the_first_cell_on_colab_says_how_to_get_a_gpu_and_keeps_runs_on_drive(fake_colab, capsys):
    import os

    run_first_cell()
    from google.colab import drive

    folder = fake_colab / "drive" / "MyDrive" / "lomix"
    assert drive.calls == [str(fake_colab / "drive")]
    assert (os.environ["LOMIX_OUTPUT_DIR"], os.environ["LOMIX_DATA"]) == (str(folder), str(folder / "data"))
    assert capsys.readouterr().out.splitlines() == [
        colab.GPU_HINT,
        f"Google Drive: runs go to {folder}/<profile> ($LOMIX_OUTPUT_DIR), data to {folder}/data ($LOMIX_DATA); "
        f"a new runtime reads them back"]
    import lomix_core as lx

    assert lx.chapter.output_folder("smoke") == folder / "smoke" and lx.data.volumes.data_root() == folder / "data"


def test_the_first_cell_anywhere_else_does_nothing(capsys):
    import os

    assert not colab.on_colab()  # no google.colab here, as on any machine but Colab's
    before = dict(os.environ)
    run_first_cell(NOTEBOOKS[-1])
    assert capsys.readouterr().out == "" and dict(os.environ) == before


def test_on_colab_a_headless_run_never_asks_for_drive(fake_colab, monkeypatch, capsys):
    import os

    monkeypatch.setenv("LOMIX_HEADLESS", "1")
    colab.prepare()
    from google.colab import drive

    assert drive.calls == [] and "LOMIX_DATA" not in os.environ
    assert capsys.readouterr().out.splitlines()[1] == ("Google Drive is not mounted and a headless run cannot ask: "
                                                      "runs and data stay in this runtime")
    (fake_colab / "drive" / "MyDrive").mkdir(parents=True)  # mounted by the notebook that started the series
    monkeypatch.setenv("LOMIX_DATA", "/content/my_data")  # a value already set is kept
    colab.prepare()
    assert drive.calls == [] and os.environ["LOMIX_DATA"] == "/content/my_data"
    assert os.environ["LOMIX_OUTPUT_DIR"] == str(fake_colab / "drive" / "MyDrive" / "lomix")


def test_on_colab_a_declined_mount_or_drive_false_keeps_the_runtime_disk(fake_colab, capsys):
    import os

    colab.prepare(drive=True, mount_point=fake_colab / "declined")
    assert capsys.readouterr().out.splitlines()[1] == ("Google Drive not mounted (mount failed: the user declined): "
                                                      "runs and data stay in this runtime")
    colab.prepare(drive=False)
    assert capsys.readouterr().out.splitlines() == [colab.GPU_HINT]
    assert "LOMIX_OUTPUT_DIR" not in os.environ


# ---- the series from an installed kit, and make test-colab's freeze comparison ------------------
def test_reproduce_finds_the_kits_own_notebooks_by_default():
    assert reproduce.find_notebooks(reproduce.NOTEBOOKS) == [reproduce.NOTEBOOKS / p.name for p in NOTEBOOKS]


def test_the_freeze_comparison_names_every_changed_package_and_ignores_added_ones():
    changed_packages = runpy.run_path(str(CHECKOUT / "colab" / "runtime_check.py"))["changed_packages"]
    before = ["ipywidgets==7.7.1", "numpy==2.1.3", "Torch==2.13.0+cpu", "widgetsnbextension==3.6.10"]
    after = ["ipywidgets==8.1.9", "lomix-kit @ git+file:///x@abc", "numpy==2.1.3", "torch==2.13.0+cpu"]
    assert changed_packages(before, after) == ["ipywidgets 7.7.1 -> 8.1.9", "widgetsnbextension 3.6.10 -> removed"]
    assert changed_packages(before, before + ["papermill==2.6.0"]) == []
