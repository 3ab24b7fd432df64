"""The kit on Google Colab: where it is installed from, and what a chapter's first cell does there.

Each chapter opens on Colab from the badge in its first cell, and its first code cell installs the
kit from the same repository. That repository is named once, as ``Repository`` in pyproject.toml's
``[project.urls]``; ``python -m lomix_core colab-links OWNER/REPO`` points the badges and install
lines of every notebook and of the README at another one (a fork), and :func:`link_problems` checks
that they all agree.

On Colab the first cell then calls :func:`prepare`. A runtime starts on a CPU and with an empty
disk, so it says how to get a GPU, and it offers to mount Google Drive and keep runs and data
there: a new runtime (each chapter opened from a badge is one) reads them back instead of training
and downloading again. Anywhere else it does nothing.
"""
from __future__ import annotations

import importlib.util
import os
import re
from pathlib import Path

from ..data.volumes import DATA_ROOT_ENV, one_line
from .chapter import OUTPUT_ENV
from ..foundations.records import save_text

CHECKOUT = Path(__file__).resolve().parents[2]  # the folder that holds pyproject.toml, in a checkout

# The one place that names the repository, and the three kinds of link made from it: a badge
# (colab.research.google.com/github/OWNER/REPO/blob/main/notebooks/NN_name.ipynb), a pip install
# line (lomix-kit @ git+https://github.com/OWNER/REPO) and a page of the repository
# (https://github.com/OWNER/REPO/blob/main/README.md#anchor), which a notebook uses where a relative
# link (../README.md) would open nothing on Colab.
HOME = re.compile(r'^Repository = "https://github\.com/(?P<repo>[\w.-]+/[\w.-]+)"$', re.MULTILINE)
BADGE = re.compile(r"https://colab\.research\.google\.com/github/(?P<repo>[\w.-]+/[\w.-]+)/blob/main/(?P<path>[\w./-]+)")
INSTALL = re.compile(r"git\+https://github\.com/(?P<repo>[\w.-]+/[\w.-]+)")
PAGE = re.compile(r"(?<![\w+])https://github\.com/(?P<repo>[\w.-]+/[\w.-]+)/blob/main/(?P<path>[\w./-]+)")
RELATIVE = re.compile(r"\]\((?P<target>\.\./[^)\s]+)\)")
REPOSITORY_NAME = re.compile(r"[A-Za-z0-9-]+/[\w.-]+")

DRIVE = Path("/content/drive")  # where Colab mounts Google Drive
GPU_HINT = "No GPU in this Colab runtime: Runtime > Change runtime type > T4 GPU, then run the notebook again."


def repository(checkout: str | Path = CHECKOUT) -> str:
    """``OWNER/REPO`` of the kit's public home, from the checkout's pyproject.toml."""
    pyproject = Path(checkout) / "pyproject.toml"
    if not pyproject.is_file():
        raise FileNotFoundError(f"no pyproject.toml in {Path(checkout).resolve()}: the repository is named in a "
                                f"checkout of the kit (run this from one, or pass its folder)")
    found = HOME.search(pyproject.read_text())
    if found is None:
        raise ValueError(f'{pyproject} has no line Repository = "https://github.com/OWNER/REPO" under [project.urls]')
    return found["repo"]


def linked_files(checkout: str | Path = CHECKOUT) -> list[Path]:
    """The files that link to the repository: the README, the pages under docs/ and every numbered notebook."""
    checkout = Path(checkout)
    return [checkout / "README.md", *sorted((checkout / "docs").glob("*.md")),
            *sorted((checkout / "notebooks").glob("[0-9][0-9]_*.ipynb"))]


def link_problems(checkout: str | Path = CHECKOUT) -> list[str]:
    """One line per link that disagrees with pyproject.toml's repository, per notebook without its
    badge (to itself) or its install line, per badge or page link to a file that is not there, and per
    relative link out of a notebook's folder (it opens nothing on Colab); none if all agree."""
    checkout, home = Path(checkout), repository(checkout)
    problems = []
    for path in linked_files(checkout):
        text = path.read_text()
        badges, installs, pages = (list(kind.finditer(text)) for kind in (BADGE, INSTALL, PAGE))
        problems += [f"{path.name}: {link[0]} names {link['repo']}, not {home}" for link in badges + installs + pages
                     if link["repo"] != home]
        problems += [f"{path.name}: its {kind} opens {link['path']}, which is not in the checkout"
                     for kind, links in (("badge", badges), ("link", pages)) for link in links
                     if not (checkout / link["path"]).is_file()]
        if path.suffix == ".ipynb":
            problems += [f"{path.name}: the relative link {link['target']} opens nothing on Colab; link "
                         f"https://github.com/{home}/blob/main/{link['target'].removeprefix('../')} instead"
                         for link in RELATIVE.finditer(text)]
            if not any(link["path"] == f"notebooks/{path.name}" for link in badges):
                problems.append(f"{path.name}: no Colab badge that opens notebooks/{path.name}")
            if not installs:
                problems.append(f"{path.name}: no install line (lomix-kit @ git+https://github.com/{home})")
    return problems


def set_repository(repo: str, checkout: str | Path = CHECKOUT) -> list[Path]:
    """Point pyproject.toml, every badge, install line and page link at ``repo`` (``OWNER/REPO``), for
    publishing a fork; returns the files that changed."""
    if not isinstance(repo, str) or not REPOSITORY_NAME.fullmatch(repo):
        raise ValueError(f"repository {repo!r} is not OWNER/REPO (e.g. my-name/lomix-kit)")
    old, changed = repository(checkout), []
    for path in [Path(checkout) / "pyproject.toml", *linked_files(checkout)]:
        text = path.read_text()
        new = HOME.sub(f'Repository = "https://github.com/{repo}"', text)
        new = BADGE.sub(lambda link: link[0].replace(f"/github/{link['repo']}/", f"/github/{repo}/"), new)
        new = INSTALL.sub(f"git+https://github.com/{repo}", new)
        new = PAGE.sub(lambda link: link[0].replace(f"github.com/{link['repo']}/", f"github.com/{repo}/"), new)
        if new != text:
            save_text(new, path)
            changed.append(path)
    print(f"{old} -> {repo}: rewrote {', '.join(p.name for p in changed) or 'nothing'}")
    return changed


def on_colab() -> bool:
    """True inside a Colab runtime, where the ``google.colab`` module is importable."""
    try:
        return importlib.util.find_spec("google.colab") is not None
    except ModuleNotFoundError:  # no ``google`` package at all
        return False


def prepare(drive: bool = True, mount_point: str | Path | None = None) -> None:
    """A chapter's first step on Colab; elsewhere nothing, not even a line.

    Says in one line how to switch to a GPU when the runtime has none. With ``drive``, mounts
    Google Drive at ``mount_point`` (default /content/drive; Colab asks for permission) and makes a
    folder on it the default for runs (``$LOMIX_OUTPUT_DIR``) and data (``$LOMIX_DATA``); values
    already set are kept. A headless run (``$LOMIX_HEADLESS=1``: papermill, nbval) cannot answer
    the permission dialog, so it uses Drive only where it is mounted already.
    """
    if not on_colab():
        return
    import torch

    if not torch.cuda.is_available():
        print(GPU_HINT)
    if drive:
        _use_drive(Path(mount_point or DRIVE))


def _use_drive(mount_point: Path) -> None:
    from .widgets import headless

    my_drive = mount_point / "MyDrive"
    if not my_drive.is_dir():
        if headless():
            print("Google Drive is not mounted and a headless run cannot ask: runs and data stay in this runtime")
            return
        from google.colab import drive

        try:
            drive.mount(str(mount_point))
        except Exception as error:  # declined or timed out; Colab raises its own error types
            print(f"Google Drive not mounted ({one_line(error)}): runs and data stay in this runtime")
            return
    folder = my_drive / "lomix"
    os.environ.setdefault(OUTPUT_ENV, str(folder))
    os.environ.setdefault(DATA_ROOT_ENV, str(folder / "data"))
    print(f"Google Drive: runs go to {os.environ[OUTPUT_ENV]}/<profile> (${OUTPUT_ENV}), data to "
          f"{os.environ[DATA_ROOT_ENV]} (${DATA_ROOT_ENV}); a new runtime reads them back")


def links_command(args) -> int:
    """``python -m lomix_core colab-links OWNER/REPO``."""
    set_repository(args.repository, args.checkout)
    problems = link_problems(args.checkout)
    print("\n".join(problems) if problems else f"every badge and install line names {args.repository}")
    return 1 if problems else 0
