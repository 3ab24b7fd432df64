"""Prepare PraNet's polyp train/test release for ``lx.data.load("polyp")``; see ``lomix_core/data/polyp.py``."""
import argparse
import sys
import textwrap

from lomix_core.data import polyp


def wrap(text: str) -> str:
    # Whole URLs on one line, so they can be copied from the terminal.
    return textwrap.fill(text, width=88, break_on_hyphens=False, break_long_words=False)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=wrap("Resize PraNet's polyp TrainDataset and its five TestDataset sets (Kvasir, CVC-ClinicDB, "
                         "CVC-ColonDB, ETIS-LaribPolypDB, CVC-300) into compressed arrays for the kit."),
        epilog=wrap(f"Download {polyp.DOWNLOAD}. Unzip TrainDataset.zip and TestDataset.zip into one folder and "
                    f"pass it as --raw. Example: {polyp.PREPARE_HINT}"))
    parser.add_argument("--raw", required=True, help="folder holding TrainDataset/ and TestDataset/")
    parser.add_argument("--out", default="data/polyp", help="where to write the prepared data (default: %(default)s)")
    parser.add_argument("--size", type=int, default=polyp.SIZE,
                        help="side of the square prepared images (default: %(default)s, as PraNet)")
    parser.add_argument("--force", action="store_true", help="prepare again even if --out is already prepared")
    args = parser.parse_args(argv)
    try:
        polyp.prepare(args.raw, args.out, force=args.force, size=args.size)
    except (FileNotFoundError, ValueError) as error:
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    main()
