"""How a command ends when it does not finish: one line that says why and what survived,
and a non-zero exit status, instead of a traceback or a false success."""

from __future__ import annotations

import errno
import os
import shlex
import shutil
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

import torch
from lightning.fabric.plugins.environments import SLURMEnvironment
from lightning.fabric.utilities.exceptions import MisconfigurationException

from mnist_lightning.errors import UserError, debugging

# kill's default, Ctrl-C, and a closed terminal or ssh session
STOPPING_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)

# Failures of the file system a user can fix: a full disk, a read-only or unwritable
# folder, a file where a folder should be, a name too long for the file system.
FIXABLE_OS_ERRORS = frozenset(
    {errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EISDIR}
    | {errno.ENAMETOOLONG, errno.EEXIST}
)
OUT_OF_MEMORY = ("not enough memory", "out of memory", "can't allocate memory", "DefaultCPUAllocator")


@dataclass
class Command:
    """What a running command knows about itself: main() makes one, the CLI fills it in, and
    when the command does not finish it words the last line and removes what it left empty."""

    name: str = "the command"
    run: Path | None = None  # the run it writes: one it made, or one it continues
    claimed: bool = False  # whether this command made that run (removed if it saved no checkpoint)
    created: list[Path] = field(default_factory=list)  # folders above the run it made (runs/, runs/mnist/)
    lock: int | None = None  # the run's flock (runs.hold), open until the command ends
    received: list[int] = field(default_factory=list)  # the stopping signals received
    # SLURM's warning before preemption (SIGUSR1), received but not yet acted on; see callbacks.SlurmRequeue.
    requeue: list[int] = field(default_factory=list)
    pid: int = field(default_factory=os.getpid)  # the process that installed the handlers

    def run_reporting_failures(self, command: Callable[[], object]) -> None:
        """Runs command(); a signal, a user's mistake or a lack of memory or disk exit non-zero with one line."""
        for signum in STOPPING_SIGNALS:
            signal.signal(signum, self._on_signal)
        if SLURMEnvironment.detect():  # Lightning keeps a SIGUSR1 handler that is already there
            signal.signal(signal.SIGUSR1, self._on_requeue_signal)
        try:
            command()
        except BaseException as err:
            if isinstance(err, SystemExit) and not self.received and err.code in (None, 0):
                raise  # --help, --print_config
            if debugging():
                raise
            message = self.stopped_message(self.received[0]) if self.received else explain(err)
            self.discard_empty_run()
            if message is None:
                raise
            print(f"mnist-lightning: {'' if self.received else 'error: '}{message}", file=sys.stderr)
            sys.exit(128 + self.received[0] if self.received else 1)
        finally:
            # A DDP rank that ends with its process group alive tears it down during the interpreter's
            # exit, which can abort the process (and the launcher then kills the other ranks).
            if torch.distributed.is_available() and torch.distributed.is_initialized():
                torch.distributed.destroy_process_group()
            if self.lock is not None:  # the run is written: a next command in this process may continue it
                os.close(self.lock)
                self.lock = None

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if os.getpid() != self.pid:
            # A forked helper (LitServe's queue manager or a worker). Ctrl-C reaches the whole process
            # group: the main process stops the helpers in order. SIGTERM or SIGHUP ends a helper quietly.
            if signum != signal.SIGINT:
                signal.signal(signum, signal.SIG_DFL)
                os.kill(os.getpid(), signum)
            return
        self.received.append(signum)
        # While a Trainer's loop runs, callbacks.StopOnSignal (and Lightning, for SIGTERM) calls this
        # from its own handler and stops the loop at the end of a batch; otherwise stop here.
        if signal.getsignal(signum) == self._on_signal:
            raise KeyboardInterrupt

    def _on_requeue_signal(self, signum: int, frame: FrameType | None) -> None:
        # Lightning's own handler saves a checkpoint and calls scontrol inside the signal handler,
        # which deadlocks when the signal lands while the main thread holds a lock that saving
        # needs (the event writer's, logging's). Here it is only noted; the loop acts on it.
        if os.getpid() == self.pid:
            self.requeue.append(signum)

    def stopped_message(self, signum: int) -> str:
        """What a stopped command saved, and how to go on."""
        name = signal.Signals(signum).name
        run = self.run
        if self.name != "fit" or run is None:
            return f"stopped by {name}: {self.name} did not finish; it wrote no output"
        requeue = sorted(run.glob("hpc_ckpt_*.ckpt"))
        if requeue:  # Lightning's SLURM handler saved it and requeued the job, which starts from it
            return f"stopped by {name}; the requeued SLURM job resumes from {requeue[-1]}"
        newest = run / "checkpoints" / "last.ckpt"
        if not newest.is_file():
            return f"stopped by {name} before the first epoch ended; nothing was saved"
        epochs = torch.load(newest, map_location="cpu", weights_only=True).get("epoch", 0) + 1
        resume = (
            f"mnist-lightning fit -c {shlex.quote(str(run / 'config.yaml'))} --ckpt_path {shlex.quote(str(newest))}"
        )
        return f"stopped by {name}; {newest} holds the {epochs} finished epoch(s). Resume: {resume}"

    def discard_empty_run(self) -> None:
        """Removes the run this command made if it holds no checkpoint: a failed command leaves no run behind."""
        if self.claimed and self.run is not None and self.run.is_dir() and not any(self.run.rglob("*.ckpt")):
            shutil.rmtree(self.run, ignore_errors=True)
        for folder in self.created:
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()


def explain(err: BaseException) -> str | None:
    """One line for a failure the user can fix, or None for a bug (which keeps its traceback)."""
    if isinstance(err, SystemExit):
        return None  # the argument parser has printed its own message
    if isinstance(err, UserError):
        return str(err)
    if isinstance(err, MisconfigurationException):  # Lightning refusing a --trainer.* setting
        return f"{' '.join(str(err).split())} (a --trainer.* setting; see `mnist-lightning fit --help`)"
    if isinstance(err, MemoryError | torch.OutOfMemoryError) or (
        isinstance(err, RuntimeError) and any(s in str(err) for s in OUT_OF_MEMORY)
    ):
        return (
            "out of memory; use smaller batches (--data.batch_size, --data.eval_batch_size) "
            "or free memory. Files written before are intact"
        )
    if isinstance(err, OSError) and err.errno in FIXABLE_OS_ERRORS:
        return (
            f"cannot write {err.filename or 'an output file'}: {err.strerror}. Free space or choose another "
            "place (runs: --trainer.logger.init_args.save_dir DIR); files written before are intact"
        )
    return None
