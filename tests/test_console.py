"""The command's first step: unusable config and checkpoint files named on the command line are
refused before Lightning is imported."""

from __future__ import annotations

import gc
import subprocess
import sys

import pytest

from mnist_lightning.console import config_files, console, option_values, refuse_unusable_files
from mnist_lightning.errors import UserError


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["test", "--ckpt_path", "a.ckpt"], ["a.ckpt"]),
        (["test", "--ckpt_path=a.ckpt", "--ckpt_path", "b.ckpt"], ["a.ckpt", "b.ckpt"]),
        (["test", "--ckpt_path"], [""]),  # no value: the parser will say so
        (["test", "--ckpt_path_x", "a.ckpt", "--data.ckpt_path=b"], []),
    ],
)
def test_option_values_reads_both_spellings_in_order(argv, expected):
    assert option_values(argv, "--ckpt_path") == expected


def test_config_files_are_the_values_of_c_and_config():
    assert config_files(["-c", "a.yaml", "fit", "--config=b.yaml", "--config", "c.yaml"]) == [
        "a.yaml",
        "b.yaml",
        "c.yaml",
    ]


def test_a_bad_checkpoint_or_config_is_refused_and_help_is_not(tmp_path):
    (tmp_path / "empty.ckpt").write_bytes(b"")
    (tmp_path / "bad.yaml").write_text("trainer: [1,\n")
    with pytest.raises(UserError, match="not a readable checkpoint"):
        refuse_unusable_files(["test", "--ckpt_path", str(tmp_path / "empty.ckpt")])
    with pytest.raises(UserError, match="bad.yaml is not valid YAML at line 2"):
        refuse_unusable_files(["fit", "--config", str(tmp_path / "bad.yaml")])
    with pytest.raises(UserError, match="does not exist"):  # the last one given is the one used
        refuse_unusable_files(["test", "--ckpt_path", str(tmp_path / "empty.ckpt"), "--ckpt_path=nowhere.ckpt"])
    for asks_help in (["--help"], ["-h"], ["--print_config"], ["--print_config=skip_null"]):
        refuse_unusable_files(["test", "--ckpt_path", str(tmp_path / "empty.ckpt"), *asks_help])
    refuse_unusable_files(["test", "--ckpt_path", "null"])  # no checkpoint: the CLI says what it needs


@pytest.mark.slow
def test_a_refusal_does_not_import_lightning(tmp_path):
    """The point of refusing early: the command answers without loading the framework."""
    code = (
        "import sys\n"
        "sys.argv = ['mnist-lightning', 'test', '--ckpt_path', 'nowhere.ckpt']\n"
        "from mnist_lightning.console import console\n"
        "try:\n    console()\nexcept SystemExit as exit_:\n    print(exit_.code)\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'lightning', 'torchmetrics', 'torchvision'}))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    said, imported = result.stdout.splitlines()
    assert said.startswith("mnist-lightning: error: checkpoint nowhere.ckpt does not exist") and imported == "[]"


def test_the_collector_is_on_again_after_a_refusal(tmp_path, monkeypatch, capsys):
    """console() stops Python's collector while it imports; a refusal must not leave it off."""
    monkeypatch.setattr(sys, "argv", ["mnist-lightning", "test", "--ckpt_path", str(tmp_path / "nowhere.ckpt")])
    with pytest.raises(SystemExit) as exit_:
        console()
    assert "does not exist" in str(exit_.value.code) and gc.isenabled()
