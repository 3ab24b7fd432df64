"""What every script in ``data_scripts/`` shares, so that each one is only its arguments and help.

A data problem (a missing folder, an unreadable file) ends the script with one ``error: ...``
line on stderr and exit status 1, not a traceback: the message already names the file and
what to do about it.
"""
from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path
from typing import Callable

from .volumes import dataset_folder, one_line


def make_parser(description: str, epilog: str | None = None) -> argparse.ArgumentParser:
    """A parser that shows ``description`` as written (the script's docstring, already laid out)
    and ``epilog`` rewrapped with whole URLs on one line, so they can be copied from the terminal."""
    if epilog is not None:
        epilog = textwrap.fill(epilog, width=88, break_on_hyphens=False, break_long_words=False)
    return argparse.ArgumentParser(description=description, epilog=epilog,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)


def prepare_parser(description: str, dataset: str, raw_help: str,
                   epilog: str | None = None) -> argparse.ArgumentParser:
    """:func:`make_parser` with the options of every ``prepare_*.py``: ``--raw``, ``--out`` (by default
    where ``lx.data.load(dataset)`` looks) and ``--force``."""
    parser = make_parser(description, epilog)
    parser.add_argument("--raw", type=Path, required=True, help=raw_help)
    parser.add_argument("--out", type=Path, default=dataset_folder(dataset, None),
                        help="where to write the prepared data (default: %(default)s)")
    parser.add_argument("--force", action="store_true", help="rebuild even if --out holds a finished preparation")
    return parser


def run(work: Callable[[argparse.Namespace], object], parser: argparse.ArgumentParser,
        argv: list[str] | None = None) -> int:
    """``work(arguments)``; the exit status, 1 after printing a data problem as one ``error:`` line.

    A data problem is a ``ValueError`` or an ``OSError`` (a missing file, a folder that cannot be
    written); anything else is a bug and keeps its traceback.
    """
    arguments = parser.parse_args(argv)
    try:
        work(arguments)
    except (OSError, ValueError) as error:
        print(f"error: {one_line(error)}", file=sys.stderr)
        return 1
    return 0
