"""Fusion: names of the supervised maps, and the vectorised mutants against the readable loop."""
import pytest
import torch

import lomix_core as lx
from lomix_core import reference
from lomix_core.fusion import OPERATORS, MapName, MutantGenerator, mutant_name, original_names, parse_name, subsets


@pytest.mark.parametrize("num_maps", [2, 3, 4, 5, 6])
def test_parse_name_inverts_mutant_name_for_every_mutant(num_maps):
    names = original_names(num_maps)
    for operator in OPERATORS:
        for subset in subsets(num_maps):
            parsed = parse_name(mutant_name(operator, subset, num_maps))
            assert parsed == MapName(operator, tuple(names[i] for i in subset))
            assert mutant_name(parsed.operator, [names.index(m) for m in parsed.members], num_maps) == \
                mutant_name(operator, subset, num_maps)


def test_parse_name_reads_every_name_a_loss_supervises():
    loss_fn = lx.LoMixLoss(4, 9, supervision="lomix")
    parsed = [parse_name(name) for name in loss_fn.map_names]
    assert parsed[:4] == [MapName(None, (name,)) for name in ["p4", "p3", "p2", "p1"]]
    assert [p.operator for p in parsed[4:]] == [op for op in OPERATORS for _ in range(11)]
    assert parse_name("wf(p4,p3,p2,p1)").members == ("p4", "p3", "p2", "p1")


@pytest.mark.parametrize("bad", ["", "add", "q1", "p0", "add(p4)", "sub(p4,p3)", "add(p4,p3", "add(p4,x)", "add()"])
def test_parse_name_rejects_what_fusion_never_builds(bad):
    with pytest.raises(ValueError, match="cannot parse map name"):
        parse_name(bad)


@pytest.mark.parametrize("wf_sharing", ["subset", "size"])
@pytest.mark.parametrize("num_maps", [2, 4, 5])
def test_vectorised_mutants_equal_the_readable_loop(num_maps, wf_sharing):
    torch.manual_seed(num_maps)
    loss_fn = lx.LoMixLoss(num_maps, 5, supervision="lomix", wf_sharing=wf_sharing)
    with torch.no_grad():  # far from the initial values, so a misplaced weight shows
        for p in loss_fn.parameters():
            p.add_(torch.randn_like(p))
    logits = [torch.randn(2, 5, 6, 7) for _ in range(num_maps)]
    generator: MutantGenerator = loss_fn.mutant_generator
    got = generator(torch.stack(logits))
    want = torch.stack(reference.maps(loss_fn, logits)[num_maps:])
    assert got.shape == (len(generator.names), 2, 5, 6, 7)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
