"""RNGState: the random stream dropout draws from continues across a resume."""

import torch

from mnist_lightning.callbacks import RNGState


def test_the_saved_random_state_is_restored_when_the_next_epoch_starts():
    saving = RNGState()
    torch.manual_seed(3)
    state = saving.state_dict()
    expected = torch.rand(5)  # what an uninterrupted run draws next

    torch.manual_seed(99)  # a resumed process starts from another state
    resuming = RNGState()
    resuming.load_state_dict(state)
    assert not torch.equal(torch.rand(5), expected)  # nothing is restored before the epoch starts
    resuming.on_train_epoch_start(None, None)
    assert torch.equal(torch.rand(5), expected)
    resuming.on_train_epoch_start(None, None)  # once only: the next epoch draws on
    assert not torch.equal(torch.rand(5), expected)
