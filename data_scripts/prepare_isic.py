"""Prepare ISIC 2018 Task 1 for ``lx.data.load("isic2018")``: pad the skin lesion images and masks
(Training, plus Validation and Test when present) to squares, resize them, and keep the original
masks for scoring, in compressed arrays for the kit. Classes, splits and layout: ``python -c "import lomix_core.data.isic as i; help(i)"``.
"""
import sys

from lomix_core.data import isic
from lomix_core.data.script import prepare_parser, run


def main(argv=None) -> int:
    parser = prepare_parser(__doc__, "isic2018", raw_help="folder holding the ISIC2018_Task1* folders",
                            epilog=f"Download {isic.DOWNLOAD}: the Task 1 Training input and ground truth are "
                                   f"required. Unzip them into one folder and pass it as --raw. "
                                   f"Example: {isic.PREPARE_COMMAND}")
    parser.add_argument("--size", type=int, default=isic.SIZE,
                        help="side of the square prepared images (default: %(default)s, as G-CASCADE)")
    return run(lambda args: isic.prepare(args.raw, args.out, force=args.force, size=args.size), parser, argv)


if __name__ == "__main__":
    sys.exit(main())
