"""Checkpoints are read weights-only and checked before use."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mnist_lightning import cli as cli_module
from mnist_lightning.checkpoint import check_checkpoint, load_checkpoint
from mnist_lightning.errors import UserError
from mnist_lightning.model import MNISTNet


def lightning_checkpoint(**changes) -> dict:
    """What `fit` saves, reduced to what check_checkpoint reads: this network's weights, Lightning 2."""
    state = {f"net.{name}": tensor for name, tensor in MNISTNet().state_dict().items()}
    return {"state_dict": state, "pytorch-lightning_version": "2.4.0", "hyper_parameters": {"lr": 0.001}, **changes}


def test_a_checkpoint_of_this_network_passes():
    check_checkpoint(Path("x.ckpt"), lightning_checkpoint())


@pytest.mark.parametrize(
    ("edit", "fragment"),
    [
        (lambda c: c.pop("state_dict"), "not a Lightning checkpoint"),
        (lambda c: c.update({"pytorch-lightning_version": "1.9.5"}), "written by Lightning 1.9.5"),
        (lambda c: c.update({"pytorch-lightning_version": "banana"}), "written by Lightning banana"),
        (lambda c: c.pop("pytorch-lightning_version"), "something other than Lightning's Trainer"),
        (lambda c: c.update({"hyper_parameters": [1, 2]}), "not a mapping"),
        (lambda c: c["state_dict"].pop("net.0.bias"), "net.0.bias"),
        (lambda c: c["state_dict"].update({"net.extra": torch.zeros(1)}), "net.extra"),
        (lambda c: c["state_dict"].update({"net.7.weight": torch.zeros(64, 1600)}), "different network"),
        (lambda c: c["state_dict"]["net.10.weight"].view(-1).__setitem__(3, float("nan")), "not finite"),
        (lambda c: c["state_dict"].update({"net.10.bias": torch.zeros(10, dtype=torch.int64)}), "net.10.bias"),
    ],
    ids=[
        "no weights",
        "Lightning 1",
        "no version number",
        "no version",
        "odd settings",
        "a missing tensor",
        "an extra tensor",
        "another shape",
        "NaN",
        "integers",
    ],
)
def test_a_checkpoint_that_is_not_ours_is_named_with_the_reason(edit, fragment):
    checkpoint = lightning_checkpoint()
    edit(checkpoint)
    with pytest.raises(UserError, match=fragment) as err:
        check_checkpoint(Path("x.ckpt"), checkpoint)
    assert "x.ckpt" in str(err.value)


def test_truncated_and_foreign_checkpoints_get_clear_messages(tiny_checkpoint, tmp_path):
    truncated = tmp_path / "half.ckpt"
    truncated.write_bytes(tiny_checkpoint.read_bytes()[:5000])
    with pytest.raises(UserError, match="not a readable checkpoint"):
        load_checkpoint(truncated)
    text = tmp_path / "notes.ckpt"
    text.write_text("hello, not a checkpoint")
    with pytest.raises(UserError, match="not a readable checkpoint"):
        load_checkpoint(text)
    plain = tmp_path / "tensor.pt"
    torch.save(torch.zeros(3), plain)
    with pytest.raises(UserError, match="not a Lightning checkpoint"):
        load_checkpoint(plain)


class RunsCode:
    """Unpickling this calls open(marker, 'w'): proof that code ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("command", ["test", "report", "predict", "export", "serve"])
def test_checkpoint_that_would_run_code_is_refused_and_never_runs(command, tmp_path, monkeypatch, capsys):
    marker = tmp_path / "code_ran"
    evil = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"lr": RunsCode(marker)}}, evil)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        cli_module.main([command, "--ckpt_path", str(evil)])
    assert exit_.value.code == 1 and "refused to load" in capsys.readouterr().err
    assert not marker.exists()
