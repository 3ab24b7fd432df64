"""Running the scripts in ``data_scripts/``: as a user types them, or in-process where a failure is all we check."""
import runpy
import subprocess
import sys
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parents[1] / "data_scripts"


def run_script(name: str, *args) -> subprocess.CompletedProcess:
    """``python data_scripts/<name>.py ARGS`` from the repository root, in a fresh interpreter."""
    return subprocess.run([sys.executable, str(SCRIPTS / f"{name}.py"), *map(str, args)], cwd=SCRIPTS.parent,
                          capture_output=True, text=True)


def script_error(name: str, capsys, *args) -> str:
    """The ``error:`` line of a script run that must fail with exit status 1 and nothing else on stderr.

    In-process, since a subprocess would cost seconds of imports.
    """
    main = runpy.run_path(str(SCRIPTS / f"{name}.py"))["main"]
    capsys.readouterr()
    assert main([str(arg) for arg in args]) == 1
    error = capsys.readouterr().err
    assert error.startswith("error: ") and error.count("\n") == 1, error
    return error
