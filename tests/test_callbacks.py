"""What a run does besides the recipe: the random stream dropout draws from continues across a
resume, a resume takes the settings given now, a NaN loss stops training, a signal
stops a loop when its batch ends, the test's predictions."""

from __future__ import annotations

import os
import signal

import lightning as L
import pytest
import torch
from helpers.training import bare_trainer
from torchmetrics.functional.classification import multiclass_confusion_matrix

from mnist_lightning import callbacks
from mnist_lightning.callbacks import NewSettingsOnResume, RNGState, StopOnNonFiniteLoss
from mnist_lightning.data import MNISTDataModule
from mnist_lightning.errors import UserError
from mnist_lightning.module import MNISTClassifier


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


def fit_briefly(data_dir, root, model: MNISTClassifier, epochs: int, ckpt_path=None) -> L.Trainer:
    """A few batches an epoch, in this process; the last state saved as root/last.ckpt."""
    trainer = bare_trainer(
        max_epochs=epochs,
        limit_train_batches=4,
        limit_val_batches=1,
        default_root_dir=root,
        callbacks=[NewSettingsOnResume()],
    )
    trainer.fit(model, MNISTDataModule(data_dir=str(data_dir), batch_size=32), ckpt_path=ckpt_path)
    trainer.save_checkpoint(root / "last.ckpt")
    return trainer


def test_resuming_with_a_new_learning_rate_gives_it_to_the_optimizer(synthetic_mnist, tmp_path, caplog):
    fit_briefly(synthetic_mnist[0], tmp_path, MNISTClassifier(lr=0.003), epochs=1)
    resumed = MNISTClassifier(lr=0.01, eps=1e-6)
    with caplog.at_level("INFO"):
        trainer = fit_briefly(synthetic_mnist[0], tmp_path, resumed, epochs=2, ckpt_path=tmp_path / "last.ckpt")
    group = trainer.optimizers[0].param_groups[0]
    assert (group["lr"], group["eps"]) == (0.01, 1e-6)  # the checkpoint's optimizer state had 0.003 and 1e-7
    assert "Resuming with new settings: lr 0.003 -> 0.01, eps 1e-07 -> 1e-06" in caplog.text


def test_resuming_without_changes_says_nothing(synthetic_mnist, tmp_path, caplog):
    fit_briefly(synthetic_mnist[0], tmp_path, MNISTClassifier(), epochs=1)
    with caplog.at_level("INFO"):
        fit_briefly(synthetic_mnist[0], tmp_path, MNISTClassifier(), epochs=2, ckpt_path=tmp_path / "last.ckpt")
    assert "Resuming" not in caplog.text


def test_a_1cycle_schedule_resumed_for_longer_is_rebuilt_as_if_it_had_always_been_that_long(synthetic_mnist, tmp_path):
    fit_briefly(synthetic_mnist[0], tmp_path, MNISTClassifier(lr=0.01, one_cycle=True), epochs=1)
    trainer = fit_briefly(
        synthetic_mnist[0],
        tmp_path,
        MNISTClassifier(lr=0.01, one_cycle=True),
        epochs=3,
        ckpt_path=tmp_path / "last.ckpt",
    )
    # The same schedule computed independently: 12 steps in all, stepped 12 times.
    reference = torch.optim.Adam([torch.zeros(1, requires_grad=True)], lr=0.01)
    schedule = torch.optim.lr_scheduler.OneCycleLR(reference, max_lr=0.01, total_steps=12)
    lrs = []
    for _ in range(12):
        lrs.append(reference.param_groups[0]["lr"])
        reference.step()
        schedule.step()
    resumed = trainer.lr_scheduler_configs[0].scheduler
    assert resumed.total_steps == 12 and resumed.last_epoch == 12
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(reference.param_groups[0]["lr"])
    assert lrs[4] > lrs[11]  # it warmed up and came down: the schedule was not restarted at step 4


def test_a_1cycle_run_resumed_without_it_goes_on_at_the_constant_rate_given(synthetic_mnist, tmp_path):
    fit_briefly(synthetic_mnist[0], tmp_path, MNISTClassifier(lr=0.01, one_cycle=True), epochs=1)
    trainer = fit_briefly(
        synthetic_mnist[0], tmp_path, MNISTClassifier(lr=0.002), epochs=2, ckpt_path=tmp_path / "last.ckpt"
    )
    assert trainer.optimizers[0].param_groups[0]["lr"] == 0.002 and not trainer.lr_scheduler_configs


def test_a_nan_loss_stops_training_before_the_epoch_is_saved(synthetic_mnist, tmp_path):
    from helpers.poison import PoisonWeights

    trainer = bare_trainer(
        max_epochs=3,
        limit_train_batches=6,
        limit_val_batches=1,
        callbacks=[PoisonWeights(epoch=1, batch=2), StopOnNonFiniteLoss()],
        enable_checkpointing=True,
        default_root_dir=tmp_path,
    )
    with pytest.raises(UserError, match="became NaN or infinite in epoch 1"):
        trainer.fit(MNISTClassifier(), MNISTDataModule(data_dir=str(synthetic_mnist[0]), batch_size=32))
    # Lightning's checkpoint of epoch 0 is the last one: epoch 1's broken weights were never saved.
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == ["epoch=0-step=6.ckpt"]


def test_the_test_results_are_every_test_image_in_order(synthetic_mnist):
    data = MNISTDataModule(str(synthetic_mnist[0]), eval_batch_size=32)  # 100 test images: the last batch is short
    model, results = MNISTClassifier(), callbacks.TestResults()  # (a Test* name pytest must not collect)
    trainer = bare_trainer(callbacks=[results])
    trainer.test(model, data, verbose=False)
    with torch.inference_mode():
        expected = model.eval()(data.test_set.images.float() / 255).softmax(1)
    assert torch.allclose(results.probabilities, expected, atol=1e-6)
    confusion = multiclass_confusion_matrix(expected.argmax(1), data.test_set.labels, 10)
    assert torch.equal(results.matrix, confusion) and results.matrix.sum() == 100


class SignalAt(L.Callback):
    """Sends signum to this process during batch `at` of any loop, in the middle of its step."""

    def __init__(self, signum: int, at: int) -> None:
        self.signum, self.at, self.batches = signum, at, 0

    def _count(self, trainer, pl_module, batch, batch_idx, *args):
        self.batches += 1
        if self.batches == self.at:
            os.kill(os.getpid(), self.signum)

    on_train_batch_start = on_predict_batch_start = _count


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGHUP, signal.SIGTERM])
def test_a_signal_during_a_training_step_stops_fit_when_the_step_ends(synthetic_mnist, signum):
    trainer = bare_trainer(max_epochs=1, limit_val_batches=0, callbacks=[callbacks.StopOnSignal(), SignalAt(signum, 3)])
    before = {s: signal.getsignal(s) for s in callbacks.StopOnSignal.SIGNALS}
    with pytest.raises(SystemExit):  # Lightning's graceful shutdown after Ctrl-C
        trainer.fit(MNISTClassifier(), MNISTDataModule(data_dir=str(synthetic_mnist[0]), batch_size=32))
    assert trainer.global_step == 3  # the third step finished; no fourth began
    assert {s: signal.getsignal(s) for s in callbacks.StopOnSignal.SIGNALS if s != signal.SIGINT} == {
        s: h for s, h in before.items() if s != signal.SIGINT
    }  # the handlers from before are back (Lightning leaves Ctrl-C ignored while it shuts down)
    signal.signal(signal.SIGINT, before[signal.SIGINT])


def test_sigterm_during_predict_stops_it(synthetic_mnist):
    stop = callbacks.StopOnSignal()
    trainer = bare_trainer(callbacks=[stop, SignalAt(signal.SIGTERM, 2)])
    previous = signal.getsignal(signal.SIGINT)
    with pytest.raises(SystemExit):
        trainer.predict(MNISTClassifier(), MNISTDataModule(data_dir=str(synthetic_mnist[0]), eval_batch_size=10))
    signal.signal(signal.SIGINT, previous)
    assert stop.received == signal.SIGTERM and trainer.predict_loop.batch_progress.current.processed == 2  # of 10
