"""Prepare PraNet's polyp train/test release for ``lx.data.load("polyp")``: pad each photo of its
TrainDataset and the five TestDataset sets (Kvasir, CVC-ClinicDB, CVC-ColonDB, ETIS-LaribPolypDB,
CVC-300) to a square, resize it, and keep its original mask for scoring, in compressed arrays for
the kit. Classes, splits and layout:
``python -c "import lomix_core.data.polyp as p; help(p)"``.
"""
import sys

from lomix_core.data import polyp
from lomix_core.data.script import prepare_parser, run


def main(argv=None) -> int:
    parser = prepare_parser(__doc__, "polyp", raw_help="folder holding TrainDataset/ and TestDataset/",
                            epilog=f"Download {polyp.DOWNLOAD}. Unzip TrainDataset.zip and TestDataset.zip into one "
                                   f"folder and pass it as --raw. Example: {polyp.PREPARE_COMMAND}")
    parser.add_argument("--size", type=int, default=polyp.SIZE,
                        help="side of the square prepared images (default: %(default)s, as PraNet)")
    return run(lambda args: polyp.prepare(args.raw, args.out, force=args.force, size=args.size), parser, argv)


if __name__ == "__main__":
    sys.exit(main())
