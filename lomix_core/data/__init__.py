"""Datasets of 2-D slices grouped into 3-D subjects, by name: ``load("synthetic", split="train")``."""
from .augment import OfficialRotFlip, RandomRotFlip, make_transform
from .registry import available, load, register
from .slices import SliceDataset
from .volumes import SplitNotPresent
from . import synthetic  # noqa: F401  (registers "synthetic")
from . import synapse  # noqa: F401  (registers "synapse")
from . import acdc  # noqa: F401  (registers "acdc")
from . import polyp  # noqa: F401  (registers "polyp")
from . import isic  # noqa: F401  (registers "isic2018")
from . import nifti_folder  # noqa: F401  (registers "nifti")
from . import brain_aal  # noqa: F401  (registers "brain_aal")
from . import abdomen_ct  # noqa: F401  (registers "abdomen_ct")

__all__ = ["OfficialRotFlip", "RandomRotFlip", "make_transform", "SliceDataset", "SplitNotPresent", "available", "load", "register"]
