"""`mnist-lightning serve` as a real server process on localhost: the API, bad requests, the
drawing page in headless Chromium, and a clean stop."""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import signal
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from fastapi import HTTPException
from helpers.cli import CONFIG, cli, only_run
from helpers.server import Server
from PIL import Image

from mnist_lightning.checkpoint import load_checkpoint
from mnist_lightning.export import Probabilities
from mnist_lightning.module import MNISTClassifier
from mnist_lightning.preprocess import mnist_style
from mnist_lightning.serve import DigitAPI, mnist_pixels, picture_bytes

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
        f"Content-Type: application/octet-stream\r\n\r\n".encode() + data + b"\r\n"
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
    "a blank picture": (lambda url: post_files(url, [("image", png(np.full((40, 40), 255, np.uint8)))]), 422, "no digit"),
    "too many pixels": (lambda url: post_files(url, [("image", _huge_png())]), 413, "pixels"),
    "too many bytes": (lambda url: post_files(url, [("image", os.urandom(6_000_000))]), 413, "larger than"),
    "two pictures": (lambda url: post_files(url, [("image", png(np.eye(28, dtype=np.uint8) * 255))] * 2), 400, "one picture"),
    "a list in JSON": (lambda url: post_json(url, {"image": ["a", "b"]}), 400, "one picture"),
    "JSON that is not an object": (lambda url: post_json(url, [1, 2]), 400, "send one picture"),
    "no image field": (lambda url: post_json(url, {"picture": "abc"}), 400, "send one picture"),
    "bad base64": (lambda url: post_json(url, {"image": "not base64!"}), 400, "base64"),
}  # fmt: skip


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


@pytest.fixture
def real_checkpoint(real_mnist, tmp_path_factory) -> Path:
    """A network that reads real handwriting: one epoch of configs/fast.yaml on real MNIST."""
    cwd = tmp_path_factory.mktemp("real")
    result = cli("fit", "-c", str(CONFIG.with_name("fast.yaml")), "--data.data_dir", str(real_mnist),
                 "--trainer.max_epochs", "1", "--trainer.check_val_every_n_epoch", "1", cwd=cwd)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return next((only_run(cwd) / "checkpoints").glob("epoch*.ckpt"))


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
    assert picture_bytes(upload) == picture_bytes({"image": encoded}) == picture_bytes({"image": f"data:image/png;base64,{encoded}"}) == digit


@pytest.mark.parametrize(("request_", "status", "said"), [
    ([1, 2], 400, "send one picture"),
    ({"picture": "x"}, 400, "send one picture"),
    ({"image": ["a", "b"]}, 400, "one picture"),
    ({"image": "not base64!"}, 400, "base64"),
    ({"image": ""}, 400, "empty"),
    ({"image": base64.b64encode(bytes(6_000_000)).decode()}, 413, "larger than"),
], ids=["not an object", "no image", "a list", "bad base64", "empty", "too large"])  # fmt: skip
def test_a_request_without_one_readable_picture_is_a_4xx(request_, status, said):
    with pytest.raises(HTTPException) as err:
        picture_bytes(request_)
    assert err.value.status_code == status and said in err.value.detail


@pytest.mark.parametrize(("data", "status"), [(b"hello", 415), (png(np.full((40, 40), 255, np.uint8)), 422), (_huge_png(), 413)],
                         ids=["text", "blank", "too many pixels"])  # fmt: skip
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
        expected = model.eval()(torch.from_numpy(mnist_style(Image.fromarray(digit))).float()[None, None] / 255).softmax(1)[0]
    assert answer["digit"] == int(expected.argmax())
    assert answer["probabilities"] == pytest.approx(expected.tolist(), abs=1e-5)
