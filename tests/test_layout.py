"""attacks.layout: channels_last only where the model predicts the same, and restored after.
Three channels: with one, NCHW and channels_last are the same memory order."""
import torch
import torch.nn as nn

from attacks.layout import attack_layout


def conv_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(4 * 4 * 4, 3)).eval()


class ViewsItsInput(nn.Module):
    """A user model that reshapes its input with .view, which channels_last images refuse."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(192, 3)

    def forward(self, x):
        return self.fc(x.view(x.shape[0], -1))


def test_a_conv_model_runs_channels_last_inside_and_is_contiguous_again_after():
    net, x = conv_net(), torch.rand(10, 3, 8, 8)
    before = net(x)
    with attack_layout(net, x) as images:
        assert images.is_contiguous(memory_format=torch.channels_last) and torch.equal(images, x)
        assert net[0].weight.is_contiguous(memory_format=torch.channels_last)
        assert torch.allclose(net(images), before, atol=1e-6)
    assert all(p.is_contiguous() for p in net.parameters())
    assert torch.equal(net(x), before)


def test_a_model_that_cannot_take_channels_last_keeps_its_layout():
    net, x = ViewsItsInput().eval(), torch.rand(10, 3, 8, 8)
    with attack_layout(net, x) as images:
        assert images is x
        net(images)  # still works
    assert all(p.is_contiguous() for p in net.parameters())


def test_non_image_inputs_are_left_alone():
    net, x = nn.Linear(5, 3), torch.rand(10, 5)
    with attack_layout(net, x) as images:
        assert images is x
