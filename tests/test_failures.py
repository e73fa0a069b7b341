"""How a command that does not finish ends: one line for what a user can fix, a traceback for a bug,
and after a signal a line naming what was saved."""

from __future__ import annotations

import errno
import signal

import pytest
import torch
from lightning.fabric.utilities.exceptions import MisconfigurationException

from mnist_lightning import failures
from mnist_lightning.errors import UserError


@pytest.mark.parametrize(
    ("error", "fragment"),
    [
        (UserError("checkpoint x.ckpt does not exist"), "checkpoint x.ckpt does not exist"),
        (MisconfigurationException("bad\n  accelerator"), "bad accelerator (a --trainer.* setting"),
        (MemoryError(), "out of memory; use smaller batches"),
        (RuntimeError("DefaultCPUAllocator: can't allocate memory"), "out of memory"),
        (
            OSError(errno.ENOSPC, "No space left on device", "runs/x.ckpt"),
            "cannot write runs/x.ckpt: No space left on device",
        ),
        (OSError(errno.EROFS, "Read-only file system", "runs"), "cannot write runs: Read-only file system"),
    ],
)
def test_what_a_user_can_fix_is_one_line(error, fragment):
    message = failures.explain(error)
    assert fragment in message and "\n" not in message


@pytest.mark.parametrize("error", [ValueError("a bug"), KeyError("x"), OSError(errno.EIO, "I/O error"), SystemExit(2)])
def test_a_bug_keeps_its_traceback(error):
    assert failures.explain(error) is None


def test_a_stop_before_anything_was_saved():
    message = failures.Command(name="report").stopped_message(signal.SIGTERM)
    assert message == "stopped by SIGTERM: report did not finish; it wrote no output"


def test_a_stopped_fit_names_its_last_checkpoint_and_the_resume_command(tmp_path):
    run = tmp_path / "my runs" / "mnist" / "r"
    (run / "checkpoints").mkdir(parents=True)
    command = failures.Command(name="fit", run=run, claimed=True)
    assert "before the first epoch ended; nothing was saved" in command.stopped_message(signal.SIGINT)
    torch.save({"epoch": 2}, run / "checkpoints" / "last.ckpt")
    message = command.stopped_message(signal.SIGHUP)
    assert message.startswith("stopped by SIGHUP") and "holds the 3 finished epoch(s)" in message
    # quoted for a shell: the path has a space
    assert message.endswith(
        f"Resume: mnist-lightning fit -c '{run / 'config.yaml'}' --ckpt_path '{run / 'checkpoints' / 'last.ckpt'}'"
    )


def test_a_failure_ends_with_one_line_and_exit_status_1(capsys):
    def command():
        raise UserError("no good")

    with pytest.raises(SystemExit) as exit_:
        failures.Command().run_reporting_failures(command)
    assert exit_.value.code == 1 and capsys.readouterr().err == "mnist-lightning: error: no good\n"
