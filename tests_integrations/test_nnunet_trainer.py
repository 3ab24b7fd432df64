"""nnUNetTrainerLoMix end to end on CPU: export a tiny brain_aal, plan and preprocess it with nnU-Net,
train a few iterations with `nnUNetv2_train -tr nnUNetTrainerLoMix_1epoch_2its -device cpu`, check
the loss's learnable parameters got gradients and are in the checkpoint, and predict the test scans
with `nnUNetv2_predict`. nnU-Net's worker pools are kept to one process (or none) and the images to
48 px so that all of it takes a few minutes on two cores."""
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from integration_extras import need

need("nnunetv2", "nnunet")
from lomix_core import LoMixLoss  # noqa: E402
from lomix_core.integrations import nnunet_raw, nnunet_shim  # noqa: E402
from lomix_core.integrations.nnunet import (LOSS_OPTIMIZER_KEY, LOSS_STATE_KEY, NnUNetLoMixLoss, TRAINERS,  # noqa: E402
                                            nnUNetTrainerLoMix)

DATASET_ID, SIZE, TRAINER = 931, 48, "nnUNetTrainerLoMix_1epoch_2its"
BIN = Path(sys.executable).parent
STEP_TIMEOUT = 900


def nnunet(command: str, *args: str, env: dict) -> subprocess.CompletedProcess:
    result = subprocess.run([str(BIN / command), *args], env=env, capture_output=True, text=True, timeout=STEP_TIMEOUT)
    assert result.returncode == 0, f"{command} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.fixture(scope="module")
def trained():
    # its own folder, not pytest's tmp_path: pytest prunes old basetemps, and another pytest on the
    # machine may do so while nnU-Net is still writing here
    root = Path(tempfile.mkdtemp(prefix="lomix-nnunet-"))
    try:
        yield train_and_predict(root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def train_and_predict(root: Path) -> dict:
    env = {**os.environ, "nnUNet_raw": str(root / "raw"), "nnUNet_preprocessed": str(root / "preprocessed"),
           "nnUNet_results": str(root / "results"), "nnUNet_n_proc_DA": "0", "nnUNet_def_n_proc": "1",
           "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).parents[1]),
                                                                             os.environ.get("PYTHONPATH")]))}
    raw = nnunet_raw.export("brain_aal", root / "raw", dataset_id=DATASET_ID, size=SIZE)
    # planning sets torch's threads to nnUNet_n_proc_DA, so 0 (no augmentation workers) only for training
    nnunet("nnUNetv2_plan_and_preprocess", "-d", str(DATASET_ID), "-c", "2d", "-npfp", "1", "-np", "1",
           "--verify_dataset_integrity", env={**env, "nnUNet_n_proc_DA": "1"})
    nnunet_raw.use_kit_split(raw, root / "preprocessed" / raw.name)
    had_shim = nnunet_shim.installed()
    nnunet_shim.install_trainers()
    try:
        nnunet("nnUNetv2_train", str(DATASET_ID), "2d", "0", "-tr", TRAINER, "-device", "cpu", env=env)
        nnunet("nnUNetv2_predict", "-i", str(raw / "imagesTs"), "-o", str(root / "predicted"), "-d", str(DATASET_ID),
               "-c", "2d", "-f", "0", "-tr", TRAINER, "-device", "cpu", "-npp", "0", "-nps", "0",
               "--disable_progress_bar", env=env)
    finally:
        if not had_shim:
            nnunet_shim.uninstall_trainers()
    folder = root / "results" / raw.name / f"{TRAINER}__nnUNetPlans__2d" / "fold_0"
    return {"root": root, "raw": raw, "folder": folder, "env": env}


def fresh_trainer(trained, monkeypatch, cls=nnUNetTrainerLoMix):
    """A trainer built in this process from the study's plans; its log goes to a scratch results folder."""
    preprocessed = trained["root"] / "preprocessed" / trained["raw"].name
    plans = {**json.loads((preprocessed / "nnUNetPlans.json").read_text()), "continue_training": False}
    dataset_json = json.loads((preprocessed / "dataset.json").read_text())
    monkeypatch.setenv("nnUNet_preprocessed", str(trained["root"] / "preprocessed"))  # nnU-Net 2.8 reads them lazily
    monkeypatch.setenv("nnUNet_results", str(trained["root"] / "scratch_results"))
    trainer = cls(plans, "2d", 0, dataset_json, device=torch.device("cpu"))
    trainer.initialize()
    return trainer


def test_checkpoint_holds_the_trained_loss_parameters(trained, monkeypatch):
    checkpoint = torch.load(trained["folder"] / "checkpoint_final.pth", map_location="cpu", weights_only=False)
    assert checkpoint["trainer_name"] == TRAINER
    state = checkpoint[LOSS_STATE_KEY]
    assert "lomix.weighting.theta" in state and any(k.startswith("lomix.mutant_generator.") for k in state)
    # θ starts at 0: every entry moved, so every map weight got a gradient and a step of the loss's own
    # AdamW, which moves a parameter by about its lr per step at most: 2 iterations at 1e-4. (In nnU-Net's
    # SGD, lr 0.01 and momentum 0.99, θ fell by units within an epoch and every map weight went to 0.)
    theta = state["lomix.weighting.theta"]
    iterations = nnUNetTrainerLoMix.lomix_loss_lr * 2
    assert bool((theta != 0).all()) and bool((theta.abs() <= 1.01 * iterations).all()), theta
    # nnU-Net's SGD holds the network alone; the loss's AdamW has moments for every loss parameter
    network = checkpoint["optimizer_state"]
    assert len(network["param_groups"][0]["params"]) == len(list(fresh_trainer(trained, monkeypatch).network.parameters()))
    adamw = checkpoint[LOSS_OPTIMIZER_KEY]
    assert len(adamw["param_groups"][0]["params"]) == len(state) == len(adamw["state"])
    assert all(moments["exp_avg"].abs().sum() > 0 and int(moments["step"]) == 2 for moments in adamw["state"].values())


def test_load_checkpoint_restores_the_loss(trained, monkeypatch):
    trainer = fresh_trainer(trained, monkeypatch, TRAINERS[TRAINER])
    assert bool((trainer.lomix_loss.lomix.weighting.theta == 0).all())
    trainer.load_checkpoint(str(trained["folder"] / "checkpoint_final.pth"))
    saved = torch.load(trained["folder"] / "checkpoint_final.pth", map_location="cpu", weights_only=False)[LOSS_STATE_KEY]
    for name, value in trainer.lomix_loss.state_dict().items():
        assert torch.equal(value, saved[name]), name
    in_adamw = {id(p) for group in trainer.lomix_optimizer.param_groups for p in group["params"]}
    in_sgd = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    assert all(id(p) in in_adamw and id(p) not in in_sgd for p in trainer.lomix_loss.parameters())
    restored = trainer.lomix_optimizer.state_dict()["state"]  # the AdamW moments come back too, for --c
    assert restored and all(int(moments["step"]) == 2 for moments in restored.values())


def test_trainer_loss_equals_lomixloss_on_the_same_outputs(trained, monkeypatch):
    trainer = fresh_trainer(trained, monkeypatch)
    torch.manual_seed(0)
    with torch.no_grad():  # the loss's learned modules away from their initial values
        for p in trainer.lomix_loss.parameters():
            p.add_(0.1 * torch.randn_like(p))
    patch = trainer.configuration_manager.patch_size
    outputs = trainer.network(torch.randn(2, 1, *patch))
    assert isinstance(trainer.loss, NnUNetLoMixLoss) and len(outputs) >= trainer.loss.num_maps >= 2
    target = torch.randint(0, trainer.label_manager.num_segmentation_heads, (2, 1, *patch)).float()
    targets = [target] + [target[..., ::2 ** i, ::2 ** i] for i in range(1, len(outputs))]  # as nnU-Net downsamples
    reference = LoMixLoss(trainer.loss.num_maps, trainer.label_manager.num_segmentation_heads)
    reference.load_state_dict(trainer.loss.lomix.state_dict())
    maps = [torch.nn.functional.interpolate(o, size=tuple(patch), mode="bilinear", align_corners=False)
            for o in outputs[:trainer.loss.num_maps]][::-1]
    assert torch.allclose(trainer.loss(outputs, targets), reference(maps, target[:, 0].long()), rtol=1e-6)


def test_nnunet_predict_wrote_every_test_scan(trained):
    test_labels = sorted((trained["raw"] / "labelsTs").glob("*.nii.gz"))
    assert test_labels
    for truth in test_labels:
        predicted = np.asarray(nib.load(trained["root"] / "predicted" / truth.name).dataobj)
        assert predicted.shape == nib.load(truth).shape
        assert predicted.min() >= 0 and predicted.max() < 8
