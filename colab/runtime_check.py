"""`make test-colab`: a student's path on a Colab-like runtime, from the install cell to the report.

1. A new venv holds exactly the packages of constraints.txt: those Colab preinstalls that the kit
   touches, at Colab's versions (the file says where it differs: Python, torch).
2. The notebooks' install cell runs as written, from a folder outside the checkout, and installs
   the kit from this checkout's commit: $LOMIX_INSTALL_SOURCE, which the cell honours, is
   git+file://localhost<checkout>@<commit> instead of the GitHub repository. Then the README's series line
   adds the [colab] extra (papermill). A pip freeze before and after each shows that no
   preinstalled package changed.
3. `python -m lomix_core reproduce --profile smoke` runs the whole series from the installed kit,
   with no checkout on the path; chapters 00-02 are the student's first steps.
4. In a Jupyter kernel, under Colab's ipywidgets, every widget of the kit has every control moved
   (move_widgets.py).

Only the standard library here: this script builds the environment it tests.
Usage: python colab/runtime_check.py --python python3.11 [--venv .colab-venv] [--work DIR]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
CHECKOUT = HERE.parent
PIP_NAME = re.compile(r"[-_.]+")


START = time.perf_counter()


def step(message: str) -> None:
    print(f"\n== {message} (at {time.perf_counter() - START:.0f} s)", flush=True)


def run(command: list[str], **kwargs) -> subprocess.CompletedProcess:
    print("$ " + " ".join(map(str, command)), flush=True)
    done = subprocess.run([str(c) for c in command], text=True, **kwargs)
    if done.returncode:
        sys.exit(f"{done.stdout or ''}{done.stderr or ''}exit status {done.returncode} from {command[0]}")
    return done


def freeze(python: Path) -> list[str]:
    return run([python, "-m", "pip", "freeze", "--all"], capture_output=True).stdout.splitlines()


def versions(lines: list[str]) -> dict[str, str]:
    """``pip freeze`` lines as normalised name -> version (or the URL of a direct install)."""
    found = {}
    for line in lines:
        name, _, version = line.partition(" @ ") if " @ " in line else line.partition("==")
        if name and not line.startswith("#"):
            found[PIP_NAME.sub("-", name.strip()).lower()] = version.strip()
    return found


def changed_packages(before: list[str], after: list[str]) -> list[str]:
    """``name old -> new`` for every package of ``before`` whose version changed or that went;
    packages that ``after`` adds are not changes."""
    old, new = versions(before), versions(after)
    return [f"{name} {version} -> {new.get(name, 'removed')}" for name, version in sorted(old.items())
            if new.get(name) != version]


def check_unchanged(python: Path, before: list[str], what: str) -> list[str]:
    after = freeze(python)
    changed = changed_packages(before, after)
    added = sorted(set(versions(after)) - set(versions(before)))
    print(f"{what}: {len(changed)} of the {len(versions(before))} packages installed before it changed; "
          f"{len(added)} added: {' '.join(added)}")
    if changed:
        sys.exit("changed by " + what + ":\n  " + "\n  ".join(changed))
    return after


def first_code_cell(notebook: Path) -> str:
    return next("".join(c["source"]) for c in json.loads(notebook.read_text())["cells"] if c["cell_type"] == "code")


def source_of_this_commit() -> str:
    """git+file:// of the checkout at its HEAD commit: what pip installs is the committed kit."""
    commit = run(["git", "-C", CHECKOUT, "rev-parse", "HEAD"], capture_output=True).stdout.strip()
    if run(["git", "-C", CHECKOUT, "status", "--porcelain", "--untracked-files=no"], capture_output=True).stdout:
        print(f"note: the checkout has uncommitted changes; this installs commit {commit[:12]} without them")
    return f"git+file://localhost{CHECKOUT}@{commit}"  # pip before 23.3 refuses a URL with no host


def reused(python: Path) -> list[str] | None:
    """The freeze of a venv this script built from the same constraints.txt, once the packages
    added since are uninstalled; None when there is no such venv (or it no longer matches)."""
    record = python.parents[1] / "preinstalled.txt"
    constraints = (HERE / "constraints.txt").read_text()
    if not python.exists() or not record.is_file() or not record.read_text().startswith(constraints):
        return None
    preinstalled = record.read_text()[len(constraints):].splitlines()
    added = sorted(set(versions(freeze(python))) - set(versions(preinstalled)))
    if added:
        run([python, "-m", "pip", "uninstall", "-q", "-y", *added])
    return preinstalled if freeze(python) == preinstalled else None


KERNEL_RUNNER = """
import sys
from jupyter_client.manager import start_new_kernel

manager, client = start_new_kernel(kernel_name="python3")
try:
    reply = client.execute_interactive(open(sys.argv[1]).read(), timeout=float(sys.argv[2]))
finally:
    client.stop_channels()
    manager.shutdown_kernel(now=True)
    del client  # now: its __del__ logs, which fails while the interpreter shuts down
sys.exit(0 if reply["content"]["status"] == "ok" else 1)
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python", default="python3.11", help="the interpreter the venv is made from")
    parser.add_argument("--venv", default=str(CHECKOUT / ".colab-venv"), help="made anew on every run")
    parser.add_argument("--reuse-venv", action="store_true",
                        help="keep a venv built by an earlier run from the same constraints.txt, uninstalling what "
                             "was added since (saves its build when rerunning by hand)")
    parser.add_argument("--work", default=None, help="folder outside the checkout to run in (default: a temporary one)")
    args = parser.parse_args(argv)
    venv, work = Path(args.venv).resolve(), Path(args.work or tempfile.mkdtemp(prefix="lomix-colab-")).resolve()
    python = venv / "bin" / "python"
    work.mkdir(parents=True, exist_ok=True)
    # As on Colab: the kit is found only where pip put it, and the venv's python and jupyter come first.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "LOMIX_HEADLESS")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env['PATH']}"
    env["PYDEVD_DISABLE_FILE_VALIDATION"] = "1"  # ipykernel 6.17's debugger warns at every kernel start

    step(f"1. a Colab-like venv from {HERE.name}/constraints.txt")
    preinstalled = reused(python) if args.reuse_venv else None
    if preinstalled is None:
        shutil.rmtree(venv, ignore_errors=True)
        run([args.python, "-m", "venv", venv])
        run([python, "-m", "pip", "install", "-q", "-r", HERE / "constraints.txt"], env=env)
        preinstalled = freeze(python)
        (venv / "preinstalled.txt").write_text((HERE / "constraints.txt").read_text() + "\n".join(preinstalled))
    run([python, "--version"])
    print(f"{len(preinstalled)} packages preinstalled")

    step("2. the notebooks' install cell, as written, from this checkout's commit")
    cell = first_code_cell(CHECKOUT / "notebooks" / "00_quickstart.ipynb")
    env["LOMIX_INSTALL_SOURCE"] = source_of_this_commit()
    ran = run([python, "-c", cell], cwd=work, env=env, capture_output=True)
    print(ran.stderr + ran.stdout, end="")
    if ran.stdout:  # off Colab the cell says nothing: no GPU hint, no Drive
        sys.exit(f"the first cell printed, off Colab: {ran.stdout}")
    installed = check_unchanged(python, preinstalled, "the install cell")
    run([python, "-m", "pip", "install", "-q", f"lomix-kit[colab] @ {env['LOMIX_INSTALL_SOURCE']}"], cwd=work, env=env)
    check_unchanged(python, installed, "the [colab] extra")
    where = run([python, "-c", "import lomix_core; print(lomix_core.__file__)"], cwd=work, env=env,
                capture_output=True).stdout.strip()
    print(f"lomix_core imported from {where}")
    if not Path(where).is_relative_to(venv):
        sys.exit("lomix_core was imported from outside the venv, not from the installed package")

    step("3. the whole series at smoke from the installed kit: python -m lomix_core reproduce --profile smoke")
    run([python, "-m", "lomix_core", "reproduce", "--profile", "smoke", "--output-root", work / "outputs"], cwd=work,
        env=env)

    step("4. every widget, live in a Jupyter kernel, every control moved")
    run([python, "-c", KERNEL_RUNNER, HERE / "move_widgets.py", "600"], cwd=work, env=env)

    if args.work is None:
        shutil.rmtree(work)
    print(f"\ntest-colab passed in {time.perf_counter() - START:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
