"""`mnist-lightning serve`: a checkpoint behind LitServe, and a page where you draw a digit.

POST /predict takes one picture, as a multipart upload (field `image`) or as JSON
`{"image": "<base64>"}` (a `data:` URL works too), makes it MNIST-like exactly as
`predict` does, and answers `{"digit": 7, "probabilities": [...]}`. GET / serves the
drawing page (serve_page.html).
"""

import base64
import binascii
import io
from pathlib import Path
from typing import Any

import litserve as ls
import numpy as np
import torch
from fastapi import HTTPException, Request
from fastapi.responses import HTMLResponse
from PIL import Image

from mnist_lightning.data import TooManyPixels, read_digit
from mnist_lightning.export import Probabilities
from mnist_lightning.preprocess import NoDigit

MAX_BYTES = 5_000_000  # a drawing or photo of one digit is far smaller
PAGE = Path(__file__).with_name("serve_page.html")


class DigitAPI(ls.LitAPI):
    """One picture in, the digit and its ten probabilities out."""

    def __init__(self, model: Probabilities) -> None:
        super().__init__()
        self.model = model

    def setup(self, device: str) -> None:
        self.model.to(device)
        self.device = device

    # Annotated with fastapi's Request (no postponed annotations here): LitServe reads the type.
    def decode_request(self, request: Request) -> np.ndarray:
        return mnist_pixels(picture_bytes(request))

    def predict(self, pixels: np.ndarray) -> list[float]:
        with torch.inference_mode():
            return self.model(torch.from_numpy(pixels)[None].to(self.device))[0].tolist()

    def encode_response(self, probabilities: list[float]) -> dict[str, Any]:
        return {"digit": int(np.argmax(probabilities)), "probabilities": [round(p, 6) for p in probabilities]}


def picture_bytes(request: Any) -> bytes:
    """The one picture a request carries, or a 4xx HTTPException saying what is wrong."""
    usage = 'send one picture: a multipart field "image", or JSON {"image": "<base64>"}'
    if not hasattr(request, "get"):  # JSON that is not an object
        raise HTTPException(400, usage)
    pictures = request.getlist("image") if hasattr(request, "getlist") else [request.get("image")]  # form or JSON
    pictures = [p for p in pictures if p is not None]
    if "images" in request or len(pictures) > 1 or (pictures and isinstance(pictures[0], list)):
        raise HTTPException(400, "one picture per request")
    if not pictures:
        raise HTTPException(400, usage)
    value = pictures[0]
    if hasattr(value, "file"):  # an upload
        data = value.file.read(MAX_BYTES + 1)
    elif isinstance(value, str):
        try:
            data = base64.b64decode(value.split(",", 1)[1] if value.startswith("data:") else value, validate=True)
        except (binascii.Error, ValueError) as err:
            raise HTTPException(400, '"image" is not valid base64') from err
    else:
        raise HTTPException(400, usage)
    if not data:
        raise HTTPException(400, "the picture is empty (0 bytes)")
    if len(data) > MAX_BYTES:
        raise HTTPException(413, f"the picture is larger than {MAX_BYTES // 1_000_000} MB")
    return data


def mnist_pixels(data: bytes) -> np.ndarray:
    """The picture as a 28x28 uint8 MNIST digit, as `predict` makes it, or a 4xx HTTPException."""
    try:
        return read_digit(io.BytesIO(data))
    except TooManyPixels as err:
        raise HTTPException(413, f"the picture has {err}") from err
    except NoDigit as err:  # blank, or no contrast
        raise HTTPException(422, str(err)) from err
    except MemoryError as err:
        raise HTTPException(413, "the picture is too large to decode") from err
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        raise HTTPException(415, "not a picture Pillow can read (PNG, JPEG, BMP, GIF, TIFF, ...)") from err


def server(model: Probabilities, workers: int = 1) -> ls.LitServer:
    """The LitServer for `model`, with the drawing page at GET / in place of LitServe's status text."""
    litserver = ls.LitServer(DigitAPI(model), accelerator="cpu", workers_per_device=workers,
                             max_payload_size=2 * MAX_BYTES, timeout=30)  # fmt: skip
    litserver.app.router.routes = [r for r in litserver.app.router.routes if getattr(r, "path", None) != "/"]
    page = PAGE.read_text()
    litserver.app.add_api_route("/", lambda: HTMLResponse(page), methods=["GET"], include_in_schema=False)
    return litserver
