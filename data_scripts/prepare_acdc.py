"""Prepare the ACDC cardiac cine-MRI data (MICCAI 2017 Automated Cardiac Diagnosis Challenge) for the kit.

Get the data first (the kit does not ship it):
  https://www.creatis.insa-lyon.fr/Challenge/acdc/  -> the database on the Human Heart Project
  platform (https://humanheart-project.creatis.insa-lyon.fr/database/ ; research use,
  CC BY-NC-SA 4.0; cite Bernard et al., IEEE TMI 2018), then unzip it.

The result holds one HDF5 volume per labelled frame (ED and ES of each patient) with MT-UNet's
70 / 10 / 20 patient split; afterwards `lomix_core.data.load("acdc", split="train")` finds it
in data/acdc (or $LOMIX_DATA/acdc). Classes, split and layout:
``python -c "import lomix_core.data.acdc as a; help(a)"``.

Examples:
  python data_scripts/prepare_acdc.py --raw ~/Downloads/database
  python data_scripts/prepare_acdc.py --raw database --out /tmp/acdc --patients patient001 patient019 patient002
"""
import sys

from lomix_core.data import acdc
from lomix_core.data.script import prepare_parser, run


def main(argv=None) -> int:
    parser = prepare_parser(__doc__, "acdc",
                            raw_help="the unzipped ACDC 'database' folder (it holds training/patient001/...)")
    parser.add_argument("--patients", nargs="+", metavar="PATIENT",
                        help="prepare only these patients, e.g. patient001 patient019 patient002 "
                             "(default: all 100 of the split lists)")
    return run(lambda args: acdc.prepare(args.raw, args.out, force=args.force, patients=args.patients), parser, argv)


if __name__ == "__main__":
    sys.exit(main())
