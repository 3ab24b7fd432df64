"""Build the embedded ``brain_aal`` dataset from Debian's mricron-data files.

The kit already ships the result (lomix_core/data/assets/brain_aal.npz); this script is how it
was made, so anyone can rebuild and check it. Classes, split and licence:
``python -c "import lomix_core.data.brain_aal as b; help(b)"``.

Examples:
  python data_scripts/build_brain_aal.py                       # from an installed mricron-data
  apt-get download mricron-data && python data_scripts/build_brain_aal.py --source mricron-data_*.deb
  python data_scripts/build_brain_aal.py --source DIR --out /tmp/brain_aal.npz --force
"""
import sys
from pathlib import Path

from lomix_core.data import brain_aal
from lomix_core.data.script import make_parser, run


def main(argv=None) -> int:
    parser = make_parser(__doc__)
    parser.add_argument("--source", type=Path, default=None,
                        help="a folder holding ch2.nii.gz, aal.nii.gz and aal.nii.txt, or a mricron-data .deb "
                             f"(default: the installed package, {brain_aal.DEBIAN_TEMPLATES})")
    parser.add_argument("--out", type=Path, default=brain_aal.DATASET_FILE, help="where to write the .npz")
    parser.add_argument("--force", action="store_true", help="rebuild even if --out exists")
    return run(lambda args: brain_aal.build(args.source, args.out, force=args.force), parser, argv)


if __name__ == "__main__":
    sys.exit(main())
