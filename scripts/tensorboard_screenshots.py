"""Screenshots of TensorBoard's views of a run, taken with headless Chromium.

    pip install playwright                      # the Python driver only; no browser download
    apt-get install chromium                    # Debian's browser, driven headless
    python scripts/tensorboard_screenshots.py --logdir runs --out docs/tensorboard

Starts the real `tensorboard` server on a free localhost port, opens its time-series, custom-scalars
(the runs' curves), images (the confusion matrix, as its card shows it) and hparams views, and saves each as
a PNG.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from playwright.sync_api import Page, sync_playwright

VIEWS = {  # file name: (TensorBoard's dashboard, what must be on the page before the picture is taken)
    "time_series.png": ("timeseries", "text=accuracy"),
    "custom_scalars.png": ("custom_scalars", "text=loss, validation (per epoch)"),
    "images.png": ("images", "text=test_confusion_matrix"),
    "hparams.png": ("hparams", "text=model.lr"),
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(url: str, server: subprocess.Popen, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and server.poll() is None:
        try:
            urllib.request.urlopen(f"{url}/data/runs", timeout=5)
            return
        except OSError:
            time.sleep(0.5)
    sys.exit("tensorboard_screenshots: the tensorboard server did not start")


def shoot(page: Page, url: str, dashboard: str, ready: str, path: Path) -> None:
    page.goto(f"{url}/#{dashboard}")
    page.wait_for_selector(f"{ready} >> visible=true", timeout=60_000)
    if dashboard == "timeseries":  # the settings pane, open by default, hides cards
        page.locator("button[aria-label*='close' i] >> visible=true").first.click()
    page.wait_for_timeout(3_000)  # charts draw after their data arrives
    page.screenshot(path=str(path))
    print(f"{path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--logdir", type=Path, default=Path("runs"))
    parser.add_argument("--out", type=Path, default=Path("docs/tensorboard"))
    parser.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    port = free_port()
    tensorboard = shutil.which("tensorboard") or str(Path(sys.executable).with_name("tensorboard"))
    server = subprocess.Popen(
        [tensorboard, "--logdir", str(args.logdir), "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(url, server)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=args.chromium, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1760, "height": 1000})
            for name, (dashboard, ready) in VIEWS.items():
                shoot(page, url, dashboard, ready, args.out / name)
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
