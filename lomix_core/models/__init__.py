"""U-shaped segmentation models that return their multi-scale logits, coarse → fine.

Every model built here returns a list of ``num_maps`` tensors ``[B, C, H, W]`` at the input's
size, in train and eval mode alike, and has a ``num_maps`` attribute saying how many. Inference
uses only the last (finest) one.
"""
from .registry import ModelSpec, available, build, register, spec
from . import unet  # noqa: F401  (registers its models)
from . import timm_unet  # noqa: F401  (registers the timm + EMCAD models)

__all__ = ["ModelSpec", "available", "build", "register", "spec"]
