"""LoMix kit: learnable weighted multi-scale logits mixing for medical image segmentation.

Data flows one way: ``data`` → ``models`` → logits → ``supervision`` (``LoMixLoss``) →
``train`` → ``evaluate`` → ``viz``.
"""
from . import data, fusion, models, supervision
from . import benchmark, experiments, profiles, report, viz, widgets
from .evaluate import DICE_CONVENTION, evaluate, mean_dice
from .supervision import PRESETS, LoMixLoss
from .train import Run, TrainConfig, train

__version__ = "0.1.0"
__all__ = ["DICE_CONVENTION", "LoMixLoss", "PRESETS", "Run", "TrainConfig", "benchmark", "data", "evaluate",
           "experiments", "fusion", "mean_dice", "models", "profiles", "report", "supervision", "train", "viz", "widgets"]
