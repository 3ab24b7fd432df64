"""Run the notebook series with papermill and report it in ``outputs/<profile>/REPORT.md``.

Each notebook runs in its own kernel with ``PROFILE`` and ``OUTPUT_DIR`` injected into its
``parameters`` cell. A failing notebook does not stop the series: the report names its cell
and error, the other notebooks still run, and the command exits non-zero.

The notebooks are the kit's own unless told otherwise: ``lomix_core/notebooks`` is a link to the
checkout's ``notebooks/``, which a built package turns into copies, so the series also runs from
an installed kit (``pip install "lomix-kit[colab] @ git+https://..."`` on Colab).
"""
from __future__ import annotations

import os
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from . import chapter, report
from ..pipeline import profiles
from ..foundations.records import save_text

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
# Chapters that need an optional extra run only when named (``--only 08``; ``make reproduce-integrations``):
# the series itself needs nothing beyond the kit, and chapter 08's nnU-Net runs have a budget of their own.
NEEDS_EXTRAS = {"08": "nnunet,monai"}


@dataclass
class NotebookResult:
    name: str
    ok: bool
    seconds: float
    error: str = ""


def find_notebooks(notebooks_dir: str | Path, only: list[str] | None = None) -> list[Path]:
    """Numbered notebooks (``03_name.ipynb``) in order; ``only`` filters by stem or number prefix."""
    found = sorted(p for p in Path(notebooks_dir).glob("[0-9][0-9]_*.ipynb"))
    if not found:
        raise FileNotFoundError(f"no numbered notebooks (NN_name.ipynb) in {Path(notebooks_dir).resolve()}")
    if only:
        chosen = [p for p in found if any(p.stem == o or p.stem.startswith(o) or p.name == o for o in only)]
        if not chosen:
            raise ValueError(f"--only {only} matches none of {[p.stem for p in found]}")
        found = chosen
    return found


def in_series(paths: list[Path], only: list[str] | None) -> tuple[list[Path], list[str]]:
    """The notebooks a run executes, and one line for each left out: a chapter of :data:`NEEDS_EXTRAS`
    runs only when ``only`` names it."""
    if only:
        return paths, []
    kept = [p for p in paths if p.name[:2] not in NEEDS_EXTRAS]
    notes = [f"{p.name} left out: it needs the [{NEEDS_EXTRAS[p.name[:2]]}] extras and has its own budget "
             f"(make reproduce-integrations, or --only {p.name[:2]})" for p in paths if p not in kept]
    return kept, notes


def run_notebook(path: Path, output_dir: Path, profile: str, cell_timeout: float | None = None) -> NotebookResult:
    """Execute one notebook; a failing or hung cell (longer than ``cell_timeout`` seconds) is
    reported by number with its error, never raised, so the rest of the series still runs.

    The kernel starts in the current folder, not the notebook's, which may be inside an installed
    package: what the notebook writes to a relative path (``./data`` without ``$LOMIX_DATA``) lands
    where the command was run."""
    import papermill as pm  # imported here: the core kit does not need Jupyter
    from nbclient.exceptions import CellTimeoutError

    executed = output_dir / path.name
    (output_dir / f"{path.stem}.summary.json").unlink(missing_ok=True)  # no stale record on failure
    start = time.perf_counter()
    try:
        pm.execute_notebook(str(path), str(executed), cwd=os.getcwd(), kernel_name="python3",
                            parameters={"PROFILE": profile, "OUTPUT_DIR": str(output_dir.resolve())},
                            progress_bar=False, execution_timeout=cell_timeout)
    except pm.PapermillExecutionError as error:
        cell = source_cell_number(executed, error.cell_index)
        message = f"cell {cell} (index {cell - 1}): {error.ename}: {error.evalue}"
        return NotebookResult(path.stem, False, time.perf_counter() - start, message.strip().splitlines()[0])
    except CellTimeoutError:
        cell = source_cell_number(executed, last_started_cell(executed))
        message = f"cell {cell} (index {cell - 1}): CellTimeoutError: still running after {cell_timeout:.0f} s"
        return NotebookResult(path.stem, False, time.perf_counter() - start, message)
    return NotebookResult(path.stem, True, time.perf_counter() - start)


def last_started_cell(executed: Path) -> int:
    """Index of the last cell papermill started: the one that was running when execution stopped."""
    import nbformat

    cells = nbformat.read(str(executed), as_version=4).cells
    return max(i for i, c in enumerate(cells) if c.metadata.get("papermill", {}).get("start_time"))


def source_cell_number(executed: Path, cell_index: int) -> int:
    """1-based number of a cell in the *source* notebook: papermill's injected parameters cell,
    which exists only in the executed copy, is not counted."""
    import nbformat

    cells = nbformat.read(str(executed), as_version=4).cells[:cell_index]
    injected = sum("injected-parameters" in c.metadata.get("tags", []) for c in cells)
    return cell_index - injected + 1


@contextmanager
def headless_kernels():
    """Kernels started inside inherit ``LOMIX_HEADLESS=1``: their widgets draw a plain figure
    (see :mod:`lomix_core.teaching.widgets`). The caller's environment is restored afterwards."""
    from .widgets import HEADLESS  # imported here: the widgets pull in matplotlib and seaborn

    before = os.environ.get(HEADLESS)
    os.environ[HEADLESS] = "1"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(HEADLESS)
        else:
            os.environ[HEADLESS] = before


def reproduce(profile: str = "cpu", notebooks_dir: str | Path | None = None, output_root: str | Path = "outputs",
              only: list[str] | None = None, cell_timeout: float | None = None) -> int:
    """Run the series; returns the process exit code (0 only if every notebook succeeded).

    ``cell_timeout=None`` takes the profile's limit per cell (:func:`profiles.cell_timeout`)."""
    profile = profiles.resolve(profile)
    # Before the first kernel starts: a missing weights file or dataset is one line now, not a
    # failure in every notebook (or, in the middle of the series, hours later).
    for line in chapter.preflight(profile, profiles.series_datasets(profile)):
        print(f"[{profile}] {line}", flush=True)
    cell_timeout = cell_timeout if cell_timeout is not None else profiles.cell_timeout(profile)
    output_dir = Path(output_root) / profile
    output_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    results = []
    with headless_kernels():
        paths, notes = in_series(find_notebooks(notebooks_dir or NOTEBOOKS, only), only)
        for note in notes:
            print(f"[{profile}] {note}", flush=True)
        for path in paths:
            print(f"[{profile}] {path.name} ...", flush=True)
            results.append(run_notebook(path, output_dir, profile, cell_timeout))
            print(f"[{profile}] {path.name}: {'ok' if results[-1].ok else 'FAILED ' + results[-1].error}"
                  f" ({results[-1].seconds:.0f} s)", flush=True)
    written = write_report(output_dir, profile, results, time.perf_counter() - start)
    print(f"report: {written}")
    return 0 if all(r.ok for r in results) else 1


def write_report(output_dir: Path, profile: str, results: list[NotebookResult], seconds: float) -> Path:
    """``REPORT.md``: the machine and wall time, every notebook's status, the findings, then each
    notebook's headline numbers, tables and figures."""
    records = {r.name: report.load_record(output_dir, r.name) for r in results}
    lines = [f"# LoMix kit: `{profile}` profile", "",
             f"- Machine: {report.machine()}", f"- Wall time: {seconds / 60:.1f} min", "",
             "| notebook | status | time (s) |", "|---|---|---|"]
    lines += [f"| [{r.name}]({r.name}.ipynb) | {'ok' if r.ok else 'FAILED: ' + r.error.replace('|', '/')} | "
              f"{r.seconds:.0f} |" for r in results]
    findings = [(name, f) for name, rec in records.items() if rec for f in rec.get("findings", [])]
    if findings:
        lines += ["", "## Findings", ""]
        for name, finding in findings:
            lines += [f"{finding} ([{name}]({name}.ipynb))", ""]
    for name, rec in records.items():
        if rec is None:
            continue
        lines += ["", f"## {name}", ""]
        lines += [f"- {key}: {value}" for key, value in rec["headline"].items()]
        for title, table in rec["tables"].items():
            lines += ["", f"**{title}**", "", table]
        lines += [""] + [f"![{Path(f).stem}]({f})" for f in rec["figures"]]
    return save_text("\n".join(lines) + "\n", output_dir / "REPORT.md")
