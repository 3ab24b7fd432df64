"""Prepare the Synapse multi-organ CT data (MICCAI 2015 Multi-Atlas Abdomen Labeling) for the kit.

Get the data first (it cannot be redistributed, so the kit does not ship it):
  https://www.synapse.org/#!Synapse:syn3193805/wiki/  (free Synapse account; accept the
  challenge's data-use terms) -> Files -> Abdomen -> RawData.zip, then unzip it.

The result is TransUNet's layout (train_npz/, test_vol_h5/, lists/) with the 8 organs of the
paper; afterwards `lomix_core.data.load("synapse", split="train")` finds it in data/synapse
(or $LOMIX_DATA/synapse). Classes, split and layout:
``python -c "import lomix_core.data.synapse as s; help(s)"``.

Examples:
  python data_scripts/prepare_synapse.py --raw ~/Downloads/RawData
  python data_scripts/prepare_synapse.py --raw RawData --out /tmp/synapse --cases case0005 case0039 case0001
"""
import sys

from lomix_core.data import synapse
from lomix_core.data.script import prepare_parser, run


def main(argv=None) -> int:
    parser = prepare_parser(__doc__, "synapse",
                            raw_help="the unzipped RawData folder (it holds Training/img and Training/label)")
    parser.add_argument("--cases", nargs="+", metavar="CASE",
                        help="prepare only these cases, e.g. case0005 case0039 case0001 "
                             "(default: all 30 of TransUNet's train and test lists)")
    return run(lambda args: synapse.prepare(args.raw, args.out, force=args.force, cases=args.cases), parser, argv)


if __name__ == "__main__":
    sys.exit(main())
