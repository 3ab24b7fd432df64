"""The MONAI loss: DynUNet's output order, equality with MONAI's DeepSupervisionLoss where both say
the same thing, and a few training steps of a small DynUNet."""
import pytest
import torch

from integration_extras import need

need("monai", "monai")
from monai.losses import DeepSupervisionLoss  # noqa: E402
from monai.networks.nets import DynUNet  # noqa: E402

from lomix_core import LoMixLoss  # noqa: E402
from lomix_core.integrations.monai import LoMixDeepSupervisionLoss, monai_per_map_loss  # noqa: E402
from lomix_core.supervision import nnunet_weights  # noqa: E402

CLASSES = 4


def small_dynunet(spatial_dims=2, deep_supr_num=2):
    torch.manual_seed(0)
    return DynUNet(spatial_dims, 1, CLASSES, kernel_size=[3] * 4, strides=[1, 2, 2, 2], upsample_kernel_size=[2] * 3,
                   filters=[8, 16, 32, 64], deep_supervision=True, deep_supr_num=deep_supr_num)


@pytest.fixture(scope="module")
def outputs_and_target():
    torch.manual_seed(1)
    net = small_dynunet()
    out = net(torch.randn(2, 1, 32, 32))
    return out.detach(), torch.randint(0, CLASSES, (2, 1, 32, 32))


def blocky(map_, side):
    """Whether ``map_ [B,C,H,W]`` is constant over side×side blocks (nearest upsampling of a 1/side map)."""
    blocks = map_.unfold(2, side, side).unfold(3, side, side)
    return bool(torch.equal(blocks, blocks[..., :1, :1].expand_as(blocks)))


def test_dynunet_stacks_its_maps_fine_to_coarse(outputs_and_target):
    out, _ = outputs_and_target
    assert out.shape == (2, 3, CLASSES, 32, 32)
    # index k is a 1/2^k map upsampled by nearest neighbour: constant on 2^k blocks, not on 2^(k+1) ones
    assert not blocky(out[:, 0], 2)
    assert blocky(out[:, 1], 2) and not blocky(out[:, 1], 4)
    assert blocky(out[:, 2], 4) and not blocky(out[:, 2], 8)


def test_per_map_loss_equals_monai_dice_ce(outputs_and_target):
    out, target = outputs_and_target
    kit = LoMixLoss(1, CLASSES, supervision="last_layer")([out[:, 0]], target[:, 0])
    assert torch.allclose(kit, monai_per_map_loss()(out[:, 0], target.float()), rtol=1e-5)


@pytest.mark.parametrize("weight_mode, kit", [
    ("same", {"supervision": "deep_supervision"}),
    ("exp", {"supervision": "deep_supervision", "weighting": [0.25, 0.5, 1.0]}),  # MONAI's fine → coarse 1, 1/2, 1/4
])
def test_equals_monai_deep_supervision_loss(outputs_and_target, weight_mode, kit):
    out, target = outputs_and_target
    reference = DeepSupervisionLoss(monai_per_map_loss(), weight_mode=weight_mode)(list(out.unbind(1)), target.float())
    ours = LoMixDeepSupervisionLoss(3, CLASSES, **kit)(out, target)
    assert torch.allclose(ours, reference, rtol=1e-5)


def test_nnunet_preset_equals_monai_with_nnunets_weights(outputs_and_target):
    out, target = outputs_and_target
    fine_to_coarse = nnunet_weights(3)[::-1]
    reference = DeepSupervisionLoss(monai_per_map_loss(), weights=fine_to_coarse)(list(out.unbind(1)), target.float())
    assert torch.allclose(LoMixDeepSupervisionLoss(3, CLASSES, supervision="nnunet")(out, target), reference, rtol=1e-5)


def test_a_list_of_maps_goes_up_to_the_finest_size():
    """A list of maps of different sizes: each coarse map goes up to the finest map's size (bilinear)."""
    torch.manual_seed(2)
    fine, coarse = torch.randn(2, CLASSES, 16, 16), torch.randn(2, CLASSES, 8, 8)
    target = torch.randint(0, CLASSES, (2, 1, 16, 16))
    up = torch.nn.functional.interpolate(coarse, size=(16, 16), mode="bilinear", align_corners=False)
    ours = LoMixDeepSupervisionLoss(2, CLASSES, supervision="deep_supervision")([fine, coarse], target)
    assert torch.allclose(ours, LoMixLoss(2, CLASSES, supervision="deep_supervision")([up, fine], target[:, 0]))


def test_one_hot_target_and_3d_volumes_match(outputs_and_target):
    out, target = outputs_and_target
    one_hot = torch.nn.functional.one_hot(target[:, 0], CLASSES).permute(0, 3, 1, 2).float()
    loss = LoMixDeepSupervisionLoss(3, CLASSES, supervision="deep_supervision", to_onehot_y=False)
    assert torch.allclose(loss(out, one_hot), LoMixDeepSupervisionLoss(3, CLASSES, supervision="deep_supervision")(out, target))
    volume = out.reshape(2, 3, CLASSES, 4, 8, 32)  # any [D, H, W] split of the pixels scores the same
    reference = DeepSupervisionLoss(monai_per_map_loss(), weight_mode="same")(
        list(volume.unbind(1)), target.reshape(2, 1, 4, 8, 32).float())
    assert torch.allclose(loss(volume, torch.nn.functional.one_hot(target.reshape(2, 4, 8, 32), CLASSES)
                               .permute(0, 4, 1, 2, 3)), reference, rtol=1e-5)


def test_bad_inputs_say_what_was_expected(outputs_and_target):
    out, target = outputs_and_target
    loss = LoMixDeepSupervisionLoss(3, CLASSES)
    with pytest.raises(ValueError, match="expected num_maps=3"):
        loss(out[:, :2], target)
    with pytest.raises(ValueError, match=r"expected class indices \[B, 1, 32, 32\]"):
        loss(out, target[..., :16])
    with pytest.raises(ValueError, match="expected one-hot"):
        LoMixDeepSupervisionLoss(3, CLASSES, to_onehot_y=False)(out, target)


def test_trains_a_dynunet_and_its_weights_learn():
    torch.manual_seed(3)
    net = small_dynunet()
    loss_fn = LoMixDeepSupervisionLoss(3, CLASSES)
    optimizer = torch.optim.Adam(list(net.parameters()) + list(loss_fn.parameters()), lr=1e-2)
    images = torch.randn(4, 1, 32, 32)
    labels = (images > 0).long() + (images > 1).long()  # [B, 1, H, W]: a task the net can learn from its input
    before = {name: p.detach().clone() for name, p in loss_fn.named_parameters()}
    losses = []
    for _ in range(4):
        optimizer.zero_grad()
        loss = loss_fn(net(images), labels)
        loss.backward()
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in loss_fn.parameters())
        optimizer.step()
        losses.append(float(loss.detach()))
    assert all(not torch.equal(before[name], p) for name, p in loss_fn.named_parameters())
    assert losses[-1] < losses[0]
    assert len(before) == len(list(loss_fn.lomix.parameters())) > 1  # the map weights and the concat/wf modules
