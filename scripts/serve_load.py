"""Requests/s and latency of `mnist-lightning serve` under concurrent clients on localhost.

    python scripts/serve_load.py --ckpt_path CKPT --data_dir ../shared/mnist [--clients 16] [--requests 1600]

Starts the server, then `--clients` threads each post single MNIST test digits (PNG
uploads) until `--requests` have been answered or `--seconds` have passed, and prints
requests/s and the 50th and 99th percentile latency. The clients share the machine
with the server: on 2 cores the numbers are the pair's, not the server's alone.
"""

from __future__ import annotations

import argparse
import io
import shutil
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from pathlib import Path

from PIL import Image

from mnist_lightning.mnist_files import load_mnist


def start_server(ckpt_path: str, port: int) -> subprocess.Popen[bytes]:
    """`mnist-lightning serve` in the background, returned once /health answers."""
    command = [
        shutil.which("mnist-lightning") or "mnist-lightning",
        "serve",
        "--ckpt_path",
        ckpt_path,
        "--port",
        str(port),
    ]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    for _ in range(240):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5).read()
            return server
        except OSError:
            if server.poll() is not None:
                sys.exit(f"serve_load.py: the server ended with exit status {server.returncode}")
            time.sleep(0.5)
    server.terminate()
    sys.exit("serve_load.py: the server did not answer /health within 2 minutes")


def upload(url: str, png: bytes) -> float:
    boundary = uuid.uuid4().hex
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="d.png"\r\n\r\n'.encode()
        + png
        + f"\r\n--{boundary}--\r\n".encode()
    )
    request = urllib.request.Request(
        f"{url}/predict", data=body, headers={"Content-Type": f"multipart/form-data; boundary={boundary}"}
    )
    start = time.perf_counter()
    with urllib.request.urlopen(request, timeout=60) as response:
        response.read()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt_path", required=True)
    parser.add_argument("--data_dir", default="data")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--requests", type=int, default=1600)
    parser.add_argument("--seconds", type=float, default=120)
    parser.add_argument("--port", type=int, default=8765, help="a free port on localhost for the server")
    args = parser.parse_args()
    digits = load_mnist(args.data_dir, train=False, download=False).data[:200].numpy()
    pngs = []
    for digit in digits:
        buffer = io.BytesIO()
        Image.fromarray(digit).save(buffer, format="PNG")
        pngs.append(buffer.getvalue())

    port = args.port
    server = start_server(str(Path(args.ckpt_path).resolve()), port)
    url = f"http://127.0.0.1:{port}"
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    deadline = time.monotonic() + args.seconds

    def client(k: int) -> None:
        i = k
        while time.monotonic() < deadline:
            with lock:
                if len(latencies) + len(errors) >= args.requests:
                    return
            try:
                latency = upload(url, pngs[i % len(pngs)])
                with lock:
                    latencies.append(latency)
            except OSError as err:
                with lock:
                    errors.append(str(err))
            i += args.clients

    try:
        upload(url, pngs[0])  # warm up
        start = time.perf_counter()
        threads = [threading.Thread(target=client, args=(k,)) for k in range(args.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - start
    finally:
        server.terminate()
        server.wait(timeout=60)
    cuts = statistics.quantiles(latencies, n=100)
    print(
        f"| clients | requests | errors | requests/s | p50 latency | p99 latency |\n|---|---|---|---|---|---|\n"
        f"| {args.clients} | {len(latencies)} | {len(errors)} | {len(latencies) / elapsed:.0f} "
        f"| {cuts[49] * 1000:.1f} ms | {cuts[98] * 1000:.1f} ms |"
    )


if __name__ == "__main__":
    main()
