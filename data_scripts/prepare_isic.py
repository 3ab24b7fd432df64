"""Prepare ISIC 2018 Task 1 for ``lx.data.load("isic2018")``; see ``lomix_core/data/isic.py``."""
import argparse
import sys
import textwrap

from lomix_core.data import isic


def wrap(text: str) -> str:
    # Whole URLs on one line, so they can be copied from the terminal.
    return textwrap.fill(text, width=88, break_on_hyphens=False, break_long_words=False)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=wrap("Resize the ISIC 2018 Task 1 skin lesion images and masks (Training, plus Validation "
                         "and Test when present) into compressed arrays for the kit."),
        epilog=wrap(f"Download {isic.DOWNLOAD}: the Task 1 Training input and ground truth are required. Unzip "
                    f"them into one folder and pass it as --raw. Example: {isic.PREPARE_HINT}"))
    parser.add_argument("--raw", required=True, help="folder holding the ISIC2018_Task1* folders")
    parser.add_argument("--out", default="data/isic2018",
                        help="where to write the prepared data (default: %(default)s)")
    parser.add_argument("--size", type=int, default=isic.SIZE,
                        help="side of the square prepared images (default: %(default)s, as G-CASCADE)")
    parser.add_argument("--force", action="store_true", help="prepare again even if --out is already prepared")
    args = parser.parse_args(argv)
    try:
        isic.prepare(args.raw, args.out, force=args.force, size=args.size)
    except (FileNotFoundError, ValueError) as error:
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    main()
