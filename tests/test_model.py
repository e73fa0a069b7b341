import math

import pytest
import torch
from torch import nn

from mnist_lightning.model import FlattenHWC, MNISTNet


def test_parameter_count_matches_keras_summary():
    assert sum(p.numel() for p in MNISTNet().parameters()) == 225_034


def test_forward_gives_ten_logits_per_image():
    net = MNISTNet().eval()
    for batch in (1, 7, 128):
        assert net(torch.rand(batch, 1, 28, 28)).shape == (batch, 10)


def test_layer_output_shapes_follow_the_notebook():
    """Recorded inside MNISTNet.forward, which reads the first 26 rows and columns: 24x24 and 10x10 where the
    notebook has 26x26 and 11x11, then the notebook's own 5x5x64 = 1600 features, 128 and 10."""
    net = MNISTNet().eval()
    shapes = []
    for layer in net:
        layer.register_forward_hook(lambda module, args, out: shapes.append(tuple(out.shape[1:])))
    net(torch.rand(2, 1, 28, 28))
    assert shapes == [
        (32, 24, 24),
        (32, 12, 12),
        (32, 12, 12),
        (64, 10, 10),
        (64, 5, 5),
        (64, 5, 5),
        (1600,),
        (128,),
        (128,),
        (128,),
        (10,),
    ]


def test_pooling_before_relu_is_the_notebooks_function_and_gradient():
    """Our conv -> pool -> relu must equal the notebook's conv -> relu -> pool."""
    torch.manual_seed(0)
    net = MNISTNet().double().eval()
    notebook = nn.Sequential(*[net[i] for i in (0, 2, 1, 3, 5, 4, 6, 7, 8, 9, 10)])
    x = torch.rand(16, 1, 28, 28, dtype=torch.double)
    ours = net(x)
    grads_ours = torch.autograd.grad(ours.square().sum(), list(net.parameters()))
    theirs = notebook(x)
    grads_theirs = torch.autograd.grad(theirs.square().sum(), list(net.parameters()))
    torch.testing.assert_close(ours, theirs, rtol=0, atol=0)
    for a, b in zip(grads_ours, grads_theirs):
        torch.testing.assert_close(a, b)


def test_flatten_is_keras_order_and_a_view_of_a_channels_last_batch():
    x = torch.rand(2, 64, 5, 5).contiguous(memory_format=torch.channels_last)
    flat = FlattenHWC()(x)
    assert flat.shape == (2, 1600)
    for c, h, w in [(0, 0, 0), (7, 3, 1), (63, 4, 4)]:
        assert flat[1, (h * 5 + w) * 64 + c] == x[1, c, h, w]  # Keras: height, width, then channel
    assert flat.data_ptr() == x.data_ptr() and flat.is_contiguous()  # no copy


@pytest.mark.parametrize("layer_index", [0, 3, 7, 10])
def test_keras_init_is_glorot_uniform_with_zero_bias(layer_index):
    torch.manual_seed(0)
    layer = MNISTNet(keras_init=True)[layer_index]
    fan_in = layer.weight[0].numel()
    fan_out = layer.weight.shape[0] * layer.weight[0, 0].numel()
    bound = math.sqrt(6 / (fan_in + fan_out))
    assert torch.all(layer.bias == 0)
    assert layer.weight.abs().max() <= bound
    # uniform(-a, a) has standard deviation a / sqrt(3)
    assert layer.weight.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.15)


def test_keras_init_false_leaves_pytorchs_own_initialisation():
    torch.manual_seed(0)
    ours = MNISTNet(keras_init=False)
    torch.manual_seed(0)  # the same layers made in the same order draw the same numbers
    layers = [nn.Conv2d(1, 32, 3), nn.Conv2d(32, 64, 3), nn.Linear(1600, 128), nn.Linear(128, 10)]
    for index, layer in zip((0, 3, 7, 10), layers):
        assert torch.equal(ours[index].weight, layer.weight) and torch.equal(ours[index].bias, layer.bias)


def test_the_last_two_rows_and_columns_never_reach_the_notebooks_output():
    """Why MNISTNet may skip them: the notebook's own layer order ignores them too."""
    torch.manual_seed(0)
    net = MNISTNet().double().eval()
    notebook = nn.Sequential(*[net[i] for i in (0, 2, 1, 3, 5, 4, 6, 7, 8, 9, 10)])
    x = torch.rand(16, 1, 28, 28, dtype=torch.double)
    changed = x.clone()
    changed[..., 26:, :] = torch.rand(16, 1, 2, 28, dtype=torch.double)
    changed[..., :, 26:] = torch.rand(16, 1, 28, 2, dtype=torch.double)
    assert not torch.equal(changed, x)
    torch.testing.assert_close(notebook(changed), notebook(x), rtol=0, atol=0)
    changed[..., 25, 25] += 1  # one pixel inside does reach it
    assert not torch.equal(notebook(changed), notebook(x))
