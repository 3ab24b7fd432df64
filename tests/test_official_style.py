"""The official code's loss arithmetic and its untrained concat (lomix_core.official_style):
a timing baseline and a defect shown in chapter 02, both checked here."""
import torch

import lomix_core as lx
from lomix_core.official_style import OfficialStyleLoMixLoss, untrained_concat


def test_official_style_loss_matches_the_kit():
    torch.manual_seed(0)
    logits = [torch.randn(2, 4, 8, 8) for _ in range(4)]
    target = torch.randint(0, 4, (2, 8, 8))
    loss_fn = lx.LoMixLoss(4, 4, supervision="lomix")
    torch.testing.assert_close(OfficialStyleLoMixLoss(loss_fn)(logits, target), loss_fn(logits, target))


def test_the_official_concat_is_new_noise_on_every_call():
    torch.manual_seed(0)
    maps = [torch.randn(1, 3, 4, 4) for _ in range(2)]
    first, second = untrained_concat(maps), untrained_concat(maps)
    assert first.shape == (1, 3, 4, 4)
    assert not torch.allclose(first, second)  # nothing is learned or kept between calls
