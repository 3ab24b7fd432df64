"""The papermill runner: ordering, parameters, a failing notebook named with its cell, exit code."""
import json
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

import lomix_core as lx
from lomix_core.__main__ import main
from lomix_core.teaching.reproduce import find_notebooks, in_series, reproduce


def write_notebook(path, *sources):
    cells = [new_code_cell(s) for s in sources]
    cells[0].metadata["tags"] = ["parameters"]
    nbformat.write(new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                                       "language": "python"}}), str(path))


@pytest.fixture
def series(tmp_path):
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    write_notebook(notebooks / "01_good.ipynb", 'PROFILE = "auto"\nOUTPUT_DIR = None',
                   "import lomix_core as lx, pandas as pd\n"
                   "lx.report.record(OUTPUT_DIR, '01_good', headline={'profile seen': PROFILE},\n"
                   "                 tables={'t': pd.DataFrame({'a': [1.5]})})")
    write_notebook(notebooks / "02_bad.ipynb", 'PROFILE = "auto"\nOUTPUT_DIR = None', "x = 1", "1 / 0")
    write_notebook(notebooks / "03_after.ipynb", 'PROFILE = "auto"\nOUTPUT_DIR = None', "y = 2")
    (notebooks / "helper.ipynb").write_text("not a numbered notebook")
    return tmp_path


def test_find_notebooks_orders_numbered_ones_and_filters(series):
    assert [p.stem for p in find_notebooks(series / "notebooks")] == ["01_good", "02_bad", "03_after"]
    assert [p.stem for p in find_notebooks(series / "notebooks", only=["03"])] == ["03_after"]
    with pytest.raises(ValueError, match="matches none"):
        find_notebooks(series / "notebooks", only=["99"])
    with pytest.raises(FileNotFoundError, match="no numbered notebooks"):
        find_notebooks(series / "outputs")


def test_failing_notebook_is_named_with_cell_and_error_and_the_rest_still_run(series):
    code = main(["reproduce", "--profile", "smoke", "--notebooks", str(series / "notebooks"),
                 "--output-root", str(series / "outputs")])
    assert code == 1
    out = series / "outputs" / "smoke"
    summary = (out / "REPORT.md").read_text()
    assert "| [01_good](01_good.ipynb) | ok |" in summary
    assert "02_bad](02_bad.ipynb) | FAILED: cell 3 (index 2): ZeroDivisionError: division by zero" in summary
    assert "| [03_after](03_after.ipynb) | ok |" in summary
    assert "- profile seen: smoke" in summary and "| 0 | 1.500 |" not in summary and "| 1.500 |" in summary
    assert "Machine:" in summary
    for name in ("01_good", "02_bad", "03_after"):
        assert (out / f"{name}.ipynb").exists()
    record = json.loads((out / "01_good.summary.json").read_text())
    assert record["headline"] == {"profile seen": "smoke"}


def test_all_good_series_exits_zero(series):
    assert reproduce("smoke", series / "notebooks", series / "outputs", only=["01", "03"]) == 0


def test_profiles_resolve():
    assert lx.profiles.resolve("smoke") == "smoke"
    assert lx.profiles.resolve("auto") in ("cpu", "full")
    with pytest.raises(ValueError, match="unknown profile 'fast'"):
        lx.profiles.resolve("fast")
    config, seeds = lx.profiles.comparison("cpu", epochs=1)
    assert config.epochs == 1 and len(seeds) >= 3


def test_markdown_table():
    import pandas as pd
    table = lx.report.markdown_table(pd.DataFrame({"x": [0.12345, float("nan")]}, index=pd.Index(["a", "b"], name="k")))
    assert table.splitlines() == ["| k | x |", "|---|---|", "| a | 0.123 |", "| b |  |"]


def test_a_hung_cell_is_reported_and_the_series_goes_on(tmp_path):
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    write_notebook(notebooks / "01_hangs.ipynb", 'PROFILE = "auto"\nOUTPUT_DIR = None', "x = 1",
                   "import time\ntime.sleep(60)")
    write_notebook(notebooks / "02_after.ipynb", 'PROFILE = "auto"\nOUTPUT_DIR = None', "y = 2")
    code = reproduce("smoke", notebooks_dir=notebooks, output_root=tmp_path / "outputs", cell_timeout=2)
    summary = (tmp_path / "outputs" / "smoke" / "REPORT.md").read_text()
    assert code == 1
    assert "| [01_hangs](01_hangs.ipynb) | FAILED: cell 3 (index 2): CellTimeoutError: still running after 2 s |" \
        in summary
    assert "| [02_after](02_after.ipynb) | ok |" in summary


def test_a_chapter_that_needs_extras_runs_only_when_named():
    paths = [Path("07_benchmarks.ipynb"), Path("08_lomix_in_your_pipeline.ipynb")]
    kept, notes = in_series(paths, None)
    assert kept == paths[:1] and len(notes) == 1 and "needs the [nnunet,monai] extras" in notes[0]
    assert in_series(paths[1:], ["08"]) == (paths[1:], [])
