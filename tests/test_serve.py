"""`mnist-lightning serve` as a real server process on localhost: the API, bad requests, the
drawing page in headless Chromium, and a clean stop."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import shutil
import signal
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from fastapi import HTTPException
from helpers.cli import cli, free_port
from helpers.server import Server
from PIL import Image

from mnist_lightning import serve
from mnist_lightning.checkpoint import load_checkpoint
from mnist_lightning.errors import UserError
from mnist_lightning.export import Probabilities
from mnist_lightning.module import MNISTClassifier
from mnist_lightning.preprocess import mnist_style
from mnist_lightning.serve import DigitAPI, check_options, mnist_pixels, picture_bytes

CHROMIUM = shutil.which("chromium")


def post(url: str, body: bytes, content_type: str) -> tuple[int, dict]:
    request = urllib.request.Request(f"{url}/predict", data=body, headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def post_json(url: str, payload: object) -> tuple[int, dict]:
    return post(url, json.dumps(payload).encode(), "application/json")


def post_files(url: str, files: list[tuple[str, bytes]]) -> tuple[int, dict]:
    boundary = uuid.uuid4().hex
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="digit.png"\r\n'
        f"Content-Type: application/octet-stream\r\n\r\n".encode()
        + data
        + b"\r\n"
        for field, data in files
    ]
    return post(url, b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}")


def png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def server(best_checkpoint, tmp_path_factory):
    running = Server(best_checkpoint, tmp_path_factory.mktemp("serve"))
    yield running
    assert running.stop() == 0  # SIGTERM: a clean stop
    output = running.log.read_text()
    assert "Server stopped" in output and "Traceback" not in output


@pytest.mark.slow
@pytest.mark.xdist_group("server")
def test_predict_answers_as_the_package_does(server, synthetic_mnist, best_checkpoint):
    _, arrays = synthetic_mnist
    digits = arrays["t10k-images-idx3-ubyte"][:5]
    model = MNISTClassifier()
    model.load_state_dict(load_checkpoint(best_checkpoint)["state_dict"])
    for digit in digits:
        upload = post_files(server.url, [("image", png(digit))])
        base64_json = post_json(server.url, {"image": base64.b64encode(png(digit)).decode()})
        data_url = post_json(server.url, {"image": "data:image/png;base64," + base64.b64encode(png(digit)).decode()})
        assert upload == base64_json == data_url
        status, body = upload
        assert status == 200 and len(body["probabilities"]) == 10
        assert sum(body["probabilities"]) == pytest.approx(1, abs=1e-4)
        assert body["digit"] == int(np.argmax(body["probabilities"]))
    from mnist_lightning.preprocess import mnist_style

    with torch.no_grad():  # the same preprocessing as `predict`, then the network
        pixels = torch.from_numpy(np.stack([mnist_style(Image.fromarray(d)) for d in digits])).float() / 255
        expected = model.eval()(pixels.unsqueeze(1)).argmax(1).tolist()
    got = [post_files(server.url, [("image", png(d))])[1]["digit"] for d in digits]
    assert got == expected


def _huge_png() -> bytes:
    return png(np.zeros((7000, 7000), np.uint8))  # 49 million pixels in a small file


BAD_REQUESTS = {
    "not a picture": (lambda url: post_files(url, [("image", b"hello, I am text")]), 415, "not a picture"),
    "an empty file": (lambda url: post_files(url, [("image", b"")]), 400, "empty"),
    "a blank picture": (
        lambda url: post_files(url, [("image", png(np.full((40, 40), 255, np.uint8)))]),
        422,
        "no digit",
    ),
    "too many pixels": (lambda url: post_files(url, [("image", _huge_png())]), 413, "pixels"),
    "a 6300x6300 picture (40 Mpx in 38 KB)": (
        lambda url: post_files(url, [("image", png(np.zeros((6300, 6300), np.uint8)))]),
        413,
        "more than the 16,000,000",
    ),
    "too many bytes": (lambda url: post_files(url, [("image", os.urandom(6_000_000))]), 413, "larger than"),
    "two pictures": (
        lambda url: post_files(url, [("image", png(np.eye(28, dtype=np.uint8) * 255))] * 2),
        400,
        "one picture",
    ),
    "a list in JSON": (lambda url: post_json(url, {"image": ["a", "b"]}), 400, "one picture"),
    "JSON that is not an object": (lambda url: post_json(url, [1, 2]), 400, "send one picture"),
    "no image field": (lambda url: post_json(url, {"picture": "abc"}), 400, "send one picture"),
    "bad base64": (lambda url: post_json(url, {"image": "not base64!"}), 400, "base64"),
}


@pytest.mark.parametrize("case", list(BAD_REQUESTS))
@pytest.mark.slow
@pytest.mark.xdist_group("server")
def test_a_bad_request_gets_a_4xx_with_a_message_and_the_server_keeps_serving(server, case):
    send, status, said = BAD_REQUESTS[case]
    got_status, body = send(server.url)
    assert got_status == status and said in body["detail"], (got_status, body)
    assert post_files(server.url, [("image", png(np.eye(28, dtype=np.uint8) * 255))])[0] == 200


@pytest.mark.slow
def test_ctrl_c_stops_the_whole_server_cleanly(best_checkpoint, tmp_path):
    running = Server(best_checkpoint, tmp_path)
    os.killpg(running.process.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the whole group
    assert running.process.wait(timeout=60) == 0
    assert "Traceback" not in running.log.read_text()
    with pytest.raises(OSError):
        urllib.request.urlopen(f"{running.url}/health", timeout=5)


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (apt-get install chromium)")
def test_the_page_reads_a_seven_drawn_with_the_mouse(real_checkpoint, tmp_path):
    from playwright.sync_api import sync_playwright

    running = Server(real_checkpoint, tmp_path)
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 900, "height": 620})
            page.goto(running.url)
            box = page.locator("#pad").bounding_box()
            stroke = [(70, 60), (210, 60), (180, 120), (150, 180), (125, 235)]  # a 7: the bar, then down-left
            page.mouse.move(box["x"] + stroke[0][0], box["y"] + stroke[0][1])
            page.mouse.down()
            for x, y in stroke[1:]:
                page.mouse.move(box["x"] + x, box["y"] + y, steps=8)
            page.mouse.up()
            page.wait_for_function("document.getElementById('digit').textContent !== ''", timeout=30_000)
            page.wait_for_timeout(1_000)  # the answer to the last stroke
            digit = page.locator("#digit").text_content()
            bars = [float(page.locator(f"#p{d}").text_content()) for d in range(10)]
            page.screenshot(path=str(tmp_path / "serve_page.png"))
            if os.environ.get("MNIST_LIGHTNING_SCREENSHOTS"):  # to refresh docs/serve_page.png
                shutil.copy(tmp_path / "serve_page.png", Path(os.environ["MNIST_LIGHTNING_SCREENSHOTS"]))
            page.click("#clear")
            assert page.locator("#digit").text_content() == ""
            browser.close()
    finally:
        assert running.stop() == 0
    assert digit == "7"
    assert int(np.argmax(bars)) == 7 and sum(bars) == pytest.approx(1, abs=0.01)


# --- in this process: the request's picture and the answer, without a server


class Form(dict):
    """A multipart form as Starlette gives it: getlist() for a field's values."""

    def getlist(self, key):
        value = self.get(key)
        return value if isinstance(value, list) else [] if value is None else [value]


def test_the_picture_comes_from_an_upload_base64_or_a_data_url():
    digit = png(np.eye(28, dtype=np.uint8) * 255)
    upload = Form(image=SimpleNamespace(file=io.BytesIO(digit)))
    encoded = base64.b64encode(digit).decode()
    assert (
        picture_bytes(upload)
        == picture_bytes({"image": encoded})
        == picture_bytes({"image": f"data:image/png;base64,{encoded}"})
        == digit
    )


@pytest.mark.parametrize(
    ("request_", "status", "said"),
    [
        ([1, 2], 400, "send one picture"),
        ({"picture": "x"}, 400, "send one picture"),
        ({"image": ["a", "b"]}, 400, "one picture"),
        ({"image": "not base64!"}, 400, "base64"),
        ({"image": ""}, 400, "empty"),
        ({"image": base64.b64encode(bytes(6_000_000)).decode()}, 413, "larger than"),
    ],
    ids=["not an object", "no image", "a list", "bad base64", "empty", "too large"],
)
def test_a_request_without_one_readable_picture_is_a_4xx(request_, status, said):
    with pytest.raises(HTTPException) as err:
        picture_bytes(request_)
    assert err.value.status_code == status and said in err.value.detail


@pytest.mark.parametrize(
    ("data", "status"),
    [(b"hello", 415), (png(np.full((40, 40), 255, np.uint8)), 422), (_huge_png(), 413)],
    ids=["text", "blank", "too many pixels"],
)
def test_a_picture_that_is_no_digit_is_a_4xx(data, status):
    with pytest.raises(HTTPException) as err:
        mnist_pixels(data)
    assert err.value.status_code == status


def test_the_api_answers_with_the_networks_probabilities(tiny_checkpoint, synthetic_mnist):
    model = MNISTClassifier()
    model.load_state_dict(load_checkpoint(tiny_checkpoint)["state_dict"])
    api = DigitAPI(Probabilities(model.net, 1 / 255, 0.0))
    api.setup("cpu")
    digit = synthetic_mnist[1]["t10k-images-idx3-ubyte"][0]
    answer = api.encode_response(api.predict(mnist_pixels(png(digit))))
    with torch.no_grad():
        expected = model.eval()(
            torch.from_numpy(mnist_style(Image.fromarray(digit))).float()[None, None] / 255
        ).softmax(1)[0]
    assert answer["digit"] == int(expected.argmax())
    assert answer["probabilities"] == pytest.approx(expected.tolist(), abs=1e-5)


def raw_request(url: str, head: str, body: bytes, half_close: bool = False) -> tuple[int | None, dict]:
    """One HTTP/1.1 request written by hand (no client adds or fixes a header), and its answer."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=60) as connection:
        connection.sendall(f"POST /predict HTTP/1.1\r\nHost: {host}\r\n{head}Connection: close\r\n\r\n".encode() + body)
        if half_close:
            connection.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    if not answer:
        return None, {}  # closed without an answer
    status = int(answer.split(b" ", 2)[1])
    return status, json.loads(answer.split(b"\r\n\r\n", 1)[1] or b"{}")


def _sized(content_type: str, body: bytes) -> tuple[str, bytes]:
    return f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n", body


DIGIT = png(np.eye(28, dtype=np.uint8) * 255)
FIELDS = "&".join(f"f{i}=x" for i in range(5000)).encode()
MALFORMED = {
    "invalid JSON": (_sized("application/json", b"{not json"), 400, "not valid JSON"),
    "empty JSON": (_sized("application/json", b""), 400, "empty"),
    "no Content-Type": ((f"Content-Length: {len(DIGIT)}\r\n", DIGIT), 415, "Content-Type none"),
    "text/plain": (_sized("text/plain", b"hello"), 415, "send one picture"),
    "multipart without a boundary": (_sized("multipart/form-data", b"--x\r\n\r\n"), 400, "form could not be read"),
    "thousands of fields": (_sized("application/x-www-form-urlencoded", FIELDS), 400, "form could not be read"),
    "deeply nested JSON": (_sized("application/json", b"[" * 200_000 + b"]" * 200_000), 400, "not valid JSON"),
    "a data: URL without a comma": (_sized("application/json", b'{"image": "data:image/png;base64"}'), 400, "no comma"),
}


@pytest.mark.slow
@pytest.mark.xdist_group("server")
@pytest.mark.parametrize("case", list(MALFORMED))
def test_a_malformed_request_gets_a_4xx_with_its_reason(server, case):
    (head, body), status, said = MALFORMED[case]
    got, answer = raw_request(server.url, head, body)
    assert got == status and said in answer["detail"], (got, answer)
    assert post_files(server.url, [("image", DIGIT)])[0] == 200  # and it goes on serving


@pytest.mark.slow
@pytest.mark.xdist_group("server")
@pytest.mark.parametrize("content_type", ["image/png", "application/x-www-form-urlencoded; charset=utf-8"])
def test_a_raw_picture_and_a_form_with_a_charset_are_read(server, content_type):
    body = DIGIT if content_type == "image/png" else b"image=" + urllib.parse.quote(base64.b64encode(DIGIT)).encode()
    status, answer = raw_request(server.url, *_sized(content_type, body))
    assert status == 200 and answer == post_files(server.url, [("image", DIGIT)])[1]


@pytest.mark.parametrize(
    ("host", "port", "workers", "said"),
    [
        ("192.168.1.5", 8000, 1, "--host 192.168.1.5: serve listens on"),
        ("127.0.0.1", 80, 1, "--port 80: give a port from 1024"),
        ("127.0.0.1", 70000, 1, "--port 70000"),
        ("127.0.0.1", 8000, 0, "--workers 0"),
    ],
)
def test_serve_options_are_checked_before_anything_starts(host, port, workers, said):
    with pytest.raises(UserError, match=said):
        check_options(host, port, workers)


def test_localhost_is_the_loopback_address():
    assert check_options("localhost", free_port(), 1) == "127.0.0.1"


@pytest.mark.slow
def test_a_busy_port_is_refused_before_serving_is_announced(best_checkpoint, tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = cli("serve", "--ckpt_path", str(best_checkpoint), "--port", str(port), cwd=tmp_path)
    assert result.returncode == 1 and f"--port {port}: cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "Serving" not in result.stdout and "Traceback" not in result.stderr


@pytest.mark.slow
def test_killing_the_server_ends_its_workers(best_checkpoint, tmp_path):
    running = Server(best_checkpoint, tmp_path, "--workers", "2")
    os.kill(running.process.pid, signal.SIGKILL)  # no chance to stop anything itself
    running.process.wait(timeout=30)
    deadline = time.monotonic() + 30
    while True:  # its HTTP and inference processes end with it and free the port
        try:
            with socket.create_connection(("127.0.0.1", running.port), timeout=2):
                pass
        except OSError:
            break
        assert time.monotonic() < deadline, "something still answers on the killed server's port"
        time.sleep(0.5)


@pytest.mark.slow
@pytest.mark.xdist_group("server")
def test_a_client_that_announces_more_than_it_sends_does_not_hurt_the_server(server):
    """Content-Length: 100000 and 11 bytes, then the client stops writing: no 500, no traceback
    (the fixture's end checks the log), and the server goes on serving."""
    got, _ = raw_request(
        server.url, "Content-Type: application/json\r\nContent-Length: 100000\r\n", b'{"image": "', True
    )
    assert got is None or 400 <= got < 500
    assert post_files(server.url, [("image", DIGIT)])[0] == 200


def test_a_body_that_never_arrives_is_answered_408(monkeypatch):
    monkeypatch.setattr(serve, "BODY_SECONDS", 0.2)
    sent = []

    async def never() -> dict:
        await asyncio.sleep(3600)

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {"type": "http", "path": "/predict", "method": "POST", "headers": [(b"content-type", b"application/json")]}
    asyncio.run(serve.OnePicture(app=None)(scope, never, send))
    assert sent[0]["status"] == 408 and b"did not arrive within 0.2 s" in sent[1]["body"]
