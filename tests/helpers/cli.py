"""The installed `mnist-lightning` as a user runs it: real processes, in a folder of the test's."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
CONFIG = CONFIGS / "mnist.yaml"
QUIET = ("--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false")


def fit_args(data_dir: Path, *extra: str, batch_size: int = 16) -> list[str]:
    """`fit` of configs/mnist.yaml on data_dir in small batches; options in extra come last and win."""
    return ["fit", "-c", str(CONFIG), "--data.data_dir", str(data_dir), "--data.batch_size", str(batch_size), *extra]


def cli_command(*args: str) -> list[str]:
    """The installed `mnist-lightning` script with arguments, as a user would type it."""
    script = shutil.which("mnist-lightning") or str(Path(sys.executable).with_name("mnist-lightning"))
    return [script, *args]


def cli(
    *args: str, cwd: Path, env: dict[str, str] | None = None, memory_kb: int | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Runs the CLI to its end; memory_kb caps its address space (`ulimit -v`)."""
    command = cli_command(*args)
    if memory_kb:
        command = ["bash", "-c", f'ulimit -v {memory_kb}; exec "$@"', "bash", *command]
    return subprocess.run(
        command,
        check=False,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def in_process(*args: str, cwd: Path) -> str:
    """`mnist-lightning ARGS` run by cli.main in this process, in cwd: what it printed. For tests of
    what a command writes (its files, its numbers); how the installed command behaves is `cli`'s."""
    from mnist_lightning.cli import main

    argv = sys.argv
    sys.argv = ["mnist-lightning"]  # LightningCLI warns when the process's own arguments are not its
    try:
        with contextlib.chdir(cwd), contextlib.redirect_stdout(io.StringIO()) as printed:
            main(list(args))
    finally:
        sys.argv = argv
    return printed.getvalue()


def shell(line: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """A command line pasted into bash, with the installed scripts (the venv's bin/) on PATH."""
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    return subprocess.run(
        ["bash", "-c", line],
        check=False,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PATH": path},
    )


class Started:
    """The CLI running in the background; its output is collected as it comes, to wait on."""

    def __init__(self, *args: str, cwd: Path, env: dict[str, str] | None = None) -> None:
        self.process = subprocess.Popen(
            cli_command(*args),
            cwd=cwd,
            env={**os.environ, **(env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self.output = {"stdout": "", "stderr": ""}
        self._readers = [threading.Thread(target=self._read, args=(name,), daemon=True) for name in self.output]
        for reader in self._readers:
            reader.start()

    @property
    def stdout(self) -> str:
        return self.output["stdout"]

    @property
    def stderr(self) -> str:
        return self.output["stderr"]

    def _read(self, name: str) -> None:
        stream = getattr(self.process, name)
        for chunk in iter(lambda: os.read(stream.fileno(), 1 << 16), b""):
            self.output[name] += chunk.decode(errors="replace")

    def wait_for(self, condition: Callable[[], bool], seconds: float = 240) -> None:
        """Polls condition until it holds; fails if the command ends first or time runs out."""
        deadline = time.monotonic() + seconds
        while not condition():
            assert self.process.poll() is None, f"it ended first: {self.stderr[-2000:]}"
            assert time.monotonic() < deadline, "timed out"
            time.sleep(0.05)

    def stop(self, signum: int, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Sends signum and waits for the end: the result as `cli` gives it."""
        self.process.send_signal(signum)
        return self.finish(timeout)

    def finish(self, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """Waits for the end: the result as `cli` gives it. A command that does not end is killed, and
        the failure shows what it had printed."""
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"it did not end within {timeout} s; stderr: {self.stderr[-3000:]}") from None
        for reader in self._readers:
            reader.join(timeout=30)
        return subprocess.CompletedProcess(self.process.args, self.process.returncode, self.stdout, self.stderr)


def runs_in(cwd: Path) -> list[Path]:
    """The run folders under cwd/runs/mnist, oldest first."""
    return sorted(p for p in (cwd / "runs" / "mnist").glob("*") if p.is_dir())


def only_run(cwd: Path) -> Path:
    """The one run folder under cwd/runs/mnist (failing when there are none or several)."""
    found = runs_in(cwd)
    assert len(found) == 1, found
    return found[0]


def last_line(result: subprocess.CompletedProcess[str]) -> str:
    """The last line on stderr: what a user reads first."""
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "(nothing)"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
