"""`mnist-lightning serve`: a checkpoint behind LitServe, and a page where you draw a digit.

POST /predict takes one picture, as a multipart upload (field `image`), as JSON
`{"image": "<base64>"}` (a `data:` URL works too) or as the body itself (image/*); anything
else is answered 4xx with the reason. It makes the picture MNIST-like exactly as
`predict` does, and answers `{"digit": 7, "probabilities": [...]}`. GET / serves the
drawing page (serve_page.html).
"""

import asyncio
import base64
import binascii
import ctypes
import io
import json
import os
import signal
import socket
import sys
from pathlib import Path
from typing import Any

import litserve as ls
import numpy as np
import torch
from fastapi import HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mnist_lightning.errors import UserError
from mnist_lightning.export import Probabilities
from mnist_lightning.pictures import TooManyPixels, read_digit
from mnist_lightning.preprocess import NoDigit

MAX_BYTES = 5_000_000  # a drawing or photo of one digit is far smaller
MAX_BODY = 8_000_000  # the picture, base64-encoded in JSON (4/3 of its bytes), with room to spare
# A phone photo is 12 Mpx; more costs seconds to decode while other requests wait.
MAX_PIXELS = 16_000_000
BODY_SECONDS = 30  # a client that announces a body and does not send it is dropped
PAGE = Path(__file__).with_name("serve_page.html")
HOSTS = ("127.0.0.1", "0.0.0.0", "::")  # what LitServe listens on
PR_SET_PDEATHSIG = 1  # linux/prctl.h
USAGE = 'send one picture: a multipart field "image", JSON {"image": "<base64>"}, or the picture itself as image/*'


class DigitAPI(ls.LitAPI):
    """One picture in, the digit and its ten probabilities out."""

    def __init__(self, model: Probabilities) -> None:
        super().__init__()
        self.model = model

    def setup(self, device: str) -> None:
        die_with_parent()  # a worker process of its own (LitServe spawns it)
        self.model.to(device)
        self.device = device

    # Annotated with fastapi's Request (no postponed annotations here): LitServe reads the type.
    def decode_request(self, request: Request) -> np.ndarray:
        return mnist_pixels(picture_bytes(request))  # OnePicture has made every request JSON

    def predict(self, pixels: np.ndarray) -> list[float]:
        with torch.inference_mode():
            return self.model(torch.from_numpy(pixels)[None].to(self.device))[0].tolist()

    def encode_response(self, probabilities: list[float]) -> dict[str, Any]:
        return {"digit": int(np.argmax(probabilities)), "probabilities": [round(p, 6) for p in probabilities]}


def picture_bytes(request: Any) -> bytes:
    """The one picture a request carries (JSON or a form), or a 4xx HTTPException saying what is wrong."""
    if not hasattr(request, "get"):  # JSON that is not an object
        raise HTTPException(400, USAGE)
    pictures = request.getlist("image") if hasattr(request, "getlist") else [request.get("image")]  # form or JSON
    pictures = [p for p in pictures if p is not None]
    if "images" in request or len(pictures) > 1 or (pictures and isinstance(pictures[0], list)):
        raise HTTPException(400, "one picture per request")
    if not pictures:
        raise HTTPException(400, USAGE)
    value = pictures[0]
    if hasattr(value, "file"):  # an upload
        data = value.file.read(MAX_BYTES + 1)
    elif isinstance(value, str):
        if value.startswith("data:") and "," not in value:
            raise HTTPException(400, '"image" is a data: URL without its data (no comma)')
        try:
            data = base64.b64decode(value.split(",", 1)[1] if value.startswith("data:") else value, validate=True)
        except (binascii.Error, ValueError) as err:
            raise HTTPException(400, '"image" is not valid base64') from err
    else:
        raise HTTPException(400, USAGE)
    if not data:
        raise HTTPException(400, "the picture is empty (0 bytes)")
    if len(data) > MAX_BYTES:
        raise HTTPException(413, f"the picture is larger than {MAX_BYTES // 1_000_000} MB")
    return data


def mnist_pixels(data: bytes) -> np.ndarray:
    """The picture as a 28x28 uint8 MNIST digit, as `predict` makes it, or a 4xx HTTPException."""
    try:
        return read_digit(io.BytesIO(data), max_pixels=MAX_PIXELS)
    except TooManyPixels as err:
        raise HTTPException(413, f"the picture has {err}") from err
    except NoDigit as err:  # blank, or no contrast
        raise HTTPException(422, str(err)) from err
    except MemoryError as err:
        raise HTTPException(413, "the picture is too large to decode") from err
    except Exception as err:  # Pillow's decoders fail in many ways on damaged files
        raise HTTPException(415, "not a picture Pillow can read (PNG, JPEG, BMP, GIF, TIFF, ...)") from err


async def _body(receive: Receive) -> bytes:
    """The request's body, refused past MAX_BODY however long the client says it is."""
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise HTTPException(400, "the client went away before the body arrived")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            raise HTTPException(413, f"the request is larger than {MAX_BODY // 1_000_000} MB")
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


async def _picture(scope: Scope, body: bytes) -> bytes:
    """The picture in a request body of any accepted kind, or a 4xx HTTPException."""
    kind = Headers(scope=scope).get("content-type", "").split(";")[0].strip().lower()
    if not body:
        raise HTTPException(400, f"the request is empty; {USAGE}")
    if kind == "application/json":
        try:
            payload = json.loads(body)
        except (ValueError, RecursionError) as err:
            raise HTTPException(400, f"the body is not valid JSON; {USAGE}") from err
        return picture_bytes(payload)
    if kind in ("multipart/form-data", "application/x-www-form-urlencoded"):

        async def once() -> Message:
            return {"type": "http.request", "body": body, "more_body": False}

        try:
            form = await Request(scope, once).form(max_files=2, max_fields=16)
        except Exception as err:  # Starlette's parsers: no boundary, too many fields, bad encoding
            raise HTTPException(
                400, f"the form could not be read ({' '.join(str(err).split()) or type(err).__name__})"
            ) from err
        try:
            return picture_bytes(form)
        finally:
            await form.close()
    if kind.startswith("image/") or kind == "application/octet-stream":
        return picture_bytes({"image": base64.b64encode(body).decode()})
    raise HTTPException(415, f"{USAGE} (got Content-Type {kind or 'none'})")


class OnePicture:
    """ASGI middleware in front of POST /predict: every request becomes JSON {"image": "<base64>"}
    before LitServe reads it, or is answered 4xx with the reason.

    LitServe reads a body as a form for two exact content types and as JSON otherwise, and
    answers 500 to whatever fails there; here every way a request can be wrong is named.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != "/predict" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        try:
            picture = await _picture(scope, await asyncio.wait_for(_body(receive), BODY_SECONDS))
        except TimeoutError:
            await JSONResponse({"detail": f"the body did not arrive within {BODY_SECONDS} s"}, 408)(
                scope, receive, send
            )
            return
        except HTTPException as err:
            await JSONResponse({"detail": err.detail}, err.status_code)(scope, receive, send)
            return
        body = json.dumps({"image": base64.b64encode(picture).decode()}).encode()
        headers = [(k, v) for k, v in scope["headers"] if k not in (b"content-type", b"content-length")]
        headers += [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if sent:
                return await receive()  # the client's disconnect, when it comes
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app({**scope, "headers": headers}, replay, send)


def die_with_parent() -> None:
    """Asks Linux to kill this process when its parent ends: the workers of a server that was
    SIGKILLed would otherwise go on answering on its port."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def check_options(host: str, port: int, workers: int) -> str:
    """The address to listen on, or UserError for options LitServe would refuse with a traceback,
    and for a port another program holds (checked before the server says it is serving)."""
    host = "127.0.0.1" if host == "localhost" else host
    if host not in HOSTS:
        raise UserError(
            f"--host {host}: serve listens on {', '.join(HOSTS)} (localhost is 127.0.0.1); "
            "to be reached from other machines use 0.0.0.0"
        )
    if not 1024 <= port <= 65535:
        raise UserError(f"--port {port}: give a port from 1024 to 65535")
    if workers < 1:
        raise UserError(f"--workers {workers}: give at least 1 inference process")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind((host, port))
        except OSError as err:
            raise UserError(
                f"--port {port}: cannot listen on {host}:{port} ({err.strerror}); "
                "another program may hold it: choose another --port"
            ) from err
    return host


def server(model: Probabilities, workers: int = 1) -> ls.LitServer:
    """The LitServer for `model`, with the drawing page at GET / in place of LitServe's status text."""
    litserver = ls.LitServer(
        DigitAPI(model), accelerator="cpu", workers_per_device=workers, max_payload_size=2 * MAX_BYTES, timeout=30
    )
    litserver.app.router.routes = [r for r in litserver.app.router.routes if getattr(r, "path", None) != "/"]
    page = PAGE.read_text()
    litserver.app.add_api_route("/", lambda: HTMLResponse(page), methods=["GET"], include_in_schema=False)
    litserver.app.add_middleware(OnePicture)  # outermost: it reads the body first
    os.register_at_fork(after_in_child=die_with_parent)  # LitServe forks its HTTP server processes
    return litserver
