"""Model tests: shapes, shared weights, the Comb = Sub initialisation, dropout rates, features()."""
import pytest
import torch

from affectlens.spontaneity.model import (ComparisonLayer, SpontaneityNet, spontaneity_paper, spontaneity_tiny,
                                          table_configs)


@pytest.mark.parametrize("config", table_configs("tiny"), ids=lambda c: c.name)
def test_shapes_and_features(config):
    net = SpontaneityNet(config).eval()
    o, a = torch.rand(3, 1, 44, 44), torch.rand(3, 1, 44, 44)
    assert net(o, a).shape == (3, 2)
    assert net.features(o, a).shape == (3, config.fc[1])
    # features() is FC2's output: the head applied to it gives the logits (dropout off in eval)
    assert torch.allclose(net.forward_head(net.features(o, a)), net(o, a), atol=1e-6)


def test_paper_size_shapes():
    net = SpontaneityNet(spontaneity_paper("comp", "comb", 2)).eval()
    assert net(torch.rand(2, 1, 44, 44), torch.rand(2, 1, 44, 44)).shape == (2, 2)


def test_dropout_rates_are_the_papers():
    net = SpontaneityNet(spontaneity_paper())
    assert [d.p for d in net.dropouts] == [0.05, 0.15, 0.25]
    assert [d.p for d in net.fc_dropouts] == [0.5, 0.25]
    assert [m.out_features for m in (net.fc1, net.fc2, net.head)][-1] == 2


@pytest.mark.parametrize("at", [1, 2, 3])
def test_two_paths_share_the_same_parameter_tensors(at):
    net = SpontaneityNet(spontaneity_tiny("comp", "sub", at))
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 3  # one set of kernels, not one per path
    seen = []
    hooks = [c.register_forward_hook(lambda m, i, o: seen.append(m.weight.data_ptr())) for c in convs]
    net.eval()(torch.rand(1, 1, 44, 44), torch.rand(1, 1, 44, 44))
    for h in hooks:
        h.remove()
    # blocks before the comparison run twice (onset and apex) on the very same weight tensor
    first = convs[0].weight.data_ptr()
    assert seen.count(first) == 2 and len(seen) == at * 2 + (3 - at)
    # and gradients from both paths land in that one tensor
    net.zero_grad()
    o = torch.rand(2, 1, 44, 44)
    net(o, o + 0.5).sum().backward()
    assert convs[0].weight.grad is not None and convs[0].weight.grad.abs().sum() > 0


def test_comb_is_initialised_to_sub():
    x, y = torch.randn(2, 8, 11, 11), torch.randn(2, 8, 11, 11)
    assert torch.allclose(ComparisonLayer(8, "comb")(x, y), ComparisonLayer(8, "sub")(x, y), atol=1e-6)
    assert torch.equal(ComparisonLayer(8, "sub")(x, y), torch.relu(x - y))
    sub = SpontaneityNet(spontaneity_tiny("comp", "sub", 2)).eval()
    comb = SpontaneityNet(spontaneity_tiny("comp", "comb", 2)).eval()
    comb.load_state_dict(sub.state_dict(), strict=False)
    o, a = torch.rand(2, 1, 44, 44), torch.rand(2, 1, 44, 44)
    assert torch.allclose(sub(o, a), comb(o, a), atol=1e-5)
    assert sum(p.numel() for p in comb.compare.parameters()) == 2 * 16 * 16


def test_diffcnn_sees_only_the_difference():
    net = SpontaneityNet(spontaneity_tiny("diff")).eval()
    o, a = torch.rand(2, 1, 44, 44), torch.rand(2, 1, 44, 44)
    assert torch.allclose(net(o, a), net(o + 0.3, a + 0.3), atol=1e-5)
