"""`mnist-lightning export`: the files run without this package and give PyTorch's answers."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from helpers.cli import cli, in_process

from mnist_lightning.checkpoint import load_checkpoint
from mnist_lightning.export import Probabilities, export, metadata, read_pt2_metadata
from mnist_lightning.module import MNISTClassifier


def reference(best_checkpoint, pixels: np.ndarray) -> np.ndarray:
    """PyTorch's probabilities through the package: the checkpoint's network on pixels / 255."""
    model = MNISTClassifier()
    model.load_state_dict(load_checkpoint(best_checkpoint)["state_dict"])
    with torch.no_grad():
        return model.eval()(torch.from_numpy(pixels).float().unsqueeze(1) / 255).softmax(1).numpy()


@pytest.fixture(scope="module")
def pixels(synthetic_mnist) -> np.ndarray:
    _, arrays = synthetic_mnist
    return arrays["t10k-images-idx3-ubyte"]  # uint8, (100, 28, 28)


@pytest.fixture(scope="module", params=["onnx", "pt2"])
def exported(request, best_checkpoint, tmp_path_factory):
    """The shared checkpoint exported by `export` in this process (the README's export lines run the installed command)."""
    fmt = request.param
    out = tmp_path_factory.mktemp("export") / f"mnist.{fmt}"
    printed = in_process(
        "export", "--ckpt_path", str(best_checkpoint), "--output", str(out), "--format", fmt, cwd=out.parent
    )
    assert str(out) in printed
    if fmt == "onnx":
        session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
        return fmt, out, lambda x: session.run(None, {"pixels": x})[0]
    program = torch.export.load(out).module()
    return fmt, out, lambda x: program(torch.from_numpy(x)).numpy()


@pytest.mark.slow
@pytest.mark.xdist_group("export")
@pytest.mark.parametrize("batch", [1, 7, 256])
def test_exported_model_matches_pytorch_at_any_batch_size(exported, best_checkpoint, pixels, batch):
    _, _, run = exported
    x = np.resize(pixels, (batch, 28, 28))  # repeats the 100 test images up to the batch size
    got, want = run(x), reference(best_checkpoint, x)
    assert got.shape == (batch, 10)
    assert np.abs(got - want).max() < 1e-5
    assert (got.argmax(1) == want.argmax(1)).all()


@pytest.mark.slow
@pytest.mark.xdist_group("export")
def test_exported_file_describes_itself(exported, best_checkpoint):
    fmt, out, _ = exported
    if fmt == "onnx":
        model = onnx.load(str(out))
        info = {p.key: p.value for p in model.metadata_props}
        (graph_input,) = model.graph.input
        assert graph_input.type.tensor_type.elem_type == onnx.TensorProto.UINT8
        assert graph_input.type.tensor_type.shape.dim[0].dim_param  # a named, dynamic batch axis
    else:
        info = read_pt2_metadata(out)
    assert info["labels"] == "0,1,2,3,4,5,6,7,8,9"
    assert info["source_checkpoint"] == str(best_checkpoint.resolve())
    assert info["producer"].startswith("mnist-lightning ")
    assert "uint8" in info["input"]


@pytest.mark.slow
def test_export_refuses_an_unknown_format_in_one_line(best_checkpoint, tmp_path):
    result = cli("export", "--ckpt_path", str(best_checkpoint), "--format", "tflite", cwd=tmp_path)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "format" in result.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("fmt", ["onnx", "pt2"])
def test_export_in_process_writes_a_model_that_gives_pytorchs_answers(fmt, tiny_checkpoint, pixels, tmp_path):
    model = MNISTClassifier()
    model.load_state_dict(load_checkpoint(tiny_checkpoint)["state_dict"])
    path = export(
        Probabilities(model.net, 1 / 255, 0.0), tmp_path / f"m.{fmt}", fmt, metadata(str(tiny_checkpoint), 1 / 255, 0.0)
    )
    if fmt == "onnx":
        got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"pixels": pixels})[0]
    else:
        got = torch.export.load(path).module()(torch.from_numpy(pixels)).numpy()
    assert np.abs(got - reference(tiny_checkpoint, pixels)).max() < 1e-5
