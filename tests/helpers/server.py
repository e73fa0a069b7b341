"""`mnist-lightning serve` as a real server process on a free localhost port."""

from __future__ import annotations

import signal
import subprocess
import time
import urllib.request
from pathlib import Path

from helpers.cli import cli_command, free_port


class Server:
    """`mnist-lightning serve` in a process group of its own, up once /health answers."""

    def __init__(self, ckpt: Path, cwd: Path, *options: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = cwd / f"serve-{self.port}.log"
        with self.log.open("w") as log:
            self.process = subprocess.Popen(
                cli_command("serve", "--ckpt_path", str(ckpt), "--port", str(self.port), *options),
                cwd=cwd,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 120
        while True:
            try:
                if urllib.request.urlopen(f"{self.url}/health", timeout=5).read() == b"ok":
                    return
            except OSError:
                pass
            assert self.process.poll() is None, self.log.read_text()[-3000:]
            assert time.monotonic() < deadline, "the server did not come up"
            time.sleep(0.5)

    def stop(self, signum: int = signal.SIGTERM) -> int:
        self.process.send_signal(signum)
        return self.process.wait(timeout=60)
