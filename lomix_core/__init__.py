"""LoMix kit: learnable weighted multi-scale logits mixing for medical image segmentation.

Data flows one way: ``data`` → ``models`` → logits → ``supervision`` (``LoMixLoss``) →
``training`` → ``evaluation`` → ``viz``; ``inference`` applies a trained model to new scans.

The method (``fusion``, ``map_loss``, ``supervision``, ``reference``) sits at the top of the
package, with the ``data`` and ``models`` registries. The rest is in one folder per layer:
``foundations`` → ``pipeline`` → ``studies`` → ``teaching``, each importing only the ones before
it. Every module is also reachable by its own name, ``lx.training``, ``lx.viz`` and so on.
"""
import importlib

from . import data, fusion, map_loss, models, supervision
from .foundations import machine
from .pipeline import checkpoints, config, evaluation, inference, profiles, timing, training
from .studies import comparisons, executors, runs, runtime, statistics, weight_movement
from .teaching import chapter, claims, findings, report
from .pipeline.evaluation import CONVENTION, evaluate, mean_dice, mean_hd95
from .pipeline.inference import TrainedModel, load_checkpoint, predict
from .supervision import PRESETS, LoMixLoss
from .pipeline.training import Run, TrainConfig, train

__version__ = machine.kit_version()

# Modules loaded on first use: the plotting ones pull in matplotlib, seaborn and ipywidgets, and
# training, the CLI and the tests' subprocesses start faster without them.
_LAZY = {"viz": "teaching", "widgets": "teaching", "reproduce": "teaching", "colab": "teaching",
         "official": "studies", "run_lock": "studies", "records": "foundations", "arguments": "foundations",
         "reference": "", "official_style": "", "cpu_kernels": "", "fused_mutants": ""}


def __getattr__(name: str):
    if name in _LAZY:
        return importlib.import_module("." + ".".join(filter(None, (_LAZY[name], name))), __name__)
    raise AttributeError(f"module 'lomix_core' has no attribute {name!r}")


__all__ = ["CONVENTION", "LoMixLoss", "PRESETS", "Run", "TrainConfig", "TrainedModel", "chapter", "checkpoints",
           "claims", "comparisons", "config", "data", "evaluate", "evaluation", "executors", "findings", "fusion",
           "inference", "load_checkpoint", "machine", "map_loss", "mean_dice", "mean_hd95", "models", "predict",
           "profiles", "report", "runs", "runtime", "statistics", "supervision", "timing", "train", "training",
           "weight_movement",
           *_LAZY]
