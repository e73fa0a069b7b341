"""Fault table: outputs that cannot be written where they were asked for."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers.cli import QUIET
from helpers.faults import Row, Scratch, check_refused

GROUP = "outputs"
pytestmark = pytest.mark.slow


def test_runs_is_a_file(scratch: Scratch, record):
    """runs/ is a file"""
    cwd = scratch.folder("runsfile")
    (cwd / "runs").write_text("a file")
    row = check_refused(scratch, scratch.fit_args("--trainer.max_epochs", "1"), 1, "cannot write", "save_dir", cwd=cwd)
    assert (cwd / "runs").read_text() == "a file"
    record(Row(row.command, row.exit, row.says, "the file untouched"))


def test_report_folder_inside_a_file(scratch: Scratch, record):
    """report --output_dir inside a file"""
    (scratch.root / "afile").write_text("x")
    args = ["report", "--ckpt_path", str(scratch.best), "--output_dir", str(scratch.root / "afile" / "report"), *QUIET]
    record(check_refused(scratch, args, 1, "--output_dir", survived="runs untouched"))


def test_predictions_inside_a_file(scratch: Scratch, record):
    """--prediction_writer.output inside a file"""
    (scratch.root / "afile").write_text("x")
    args = [
        "predict",
        "--ckpt_path",
        str(scratch.best),
        "--prediction_writer.output",
        str(scratch.root / "afile" / "p.csv"),
        *QUIET,
    ]
    record(check_refused(scratch, args, 1, "--prediction_writer.output"))


def test_a_file_name_of_250_bytes(scratch: Scratch, record):
    """an output file name of 250 bytes"""
    cwd = scratch.folder("long")
    args = ["predict", "--ckpt_path", str(scratch.best), "--prediction_writer.output", "p" * 246 + ".csv", *QUIET]
    result = scratch.cli(*args, cwd=cwd)
    assert result.returncode == 0 and (cwd / ("p" * 246 + ".csv")).is_file(), result.stderr[-2000:]
    record(
        Row(
            "mnist-lightning predict --ckpt_path CKPT --prediction_writer.output ppp…p.csv (250 bytes)",
            0,
            "(writes it)",
            "the predictions",
        )
    )


def test_a_file_name_of_256_bytes(scratch: Scratch, record):
    """an output file name of 256 bytes"""
    args = ["predict", "--ckpt_path", str(scratch.best), "--prediction_writer.output", "p" * 252 + ".csv", *QUIET]
    row = check_refused(scratch, args, 1, "File name too long")
    record(
        Row(
            "mnist-lightning predict --ckpt_path CKPT --prediction_writer.output ppp…p.csv (256 bytes)",
            row.exit,
            row.says,
            row.survived,
        )
    )


@pytest.fixture
def tmpfs(scratch: Scratch, request) -> Iterator[Path]:
    """A small RAM file system of request.param bytes: a real full disk (skipped where mounting is not allowed)."""
    path = scratch.folder(f"tmpfs-{request.node.name}")
    mount = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={request.param}", "tmpfs", str(path)], check=False, capture_output=True
    )
    if mount.returncode != 0:
        pytest.skip("mounting a tmpfs is not allowed here")
    yield path
    subprocess.run(["umount", str(path)], check=False)


@pytest.mark.parametrize("tmpfs", ["2m"], indirect=True)
def test_disk_full_while_writing_a_checkpoint(scratch: Scratch, record, tmpfs: Path):
    """disk full while writing a checkpoint (a 2 MB file system)"""
    cwd = scratch.folder("full")
    args = scratch.fit_args("--trainer.max_epochs", "1", "--trainer.logger.init_args.save_dir", str(tmpfs))
    row = check_refused(scratch, args, 1, "No space left on device", cwd=cwd)
    assert not [p for p in tmpfs.rglob("*") if p.name.startswith(".mnist-lightning-")], "a temporary file was left"
    record(Row(row.command, row.exit, row.says, "no partial file"))


@pytest.mark.parametrize("tmpfs", ["64k"], indirect=True)
def test_disk_full_while_writing_predictions(scratch: Scratch, record, tmpfs: Path):
    """disk full while writing predictions"""
    old = tmpfs / "predictions.csv"
    old.write_text("old\n")
    (tmpfs / "filler").write_bytes(b"x" * (60 * 1024))
    args = ["predict", "--ckpt_path", str(scratch.best), "--prediction_writer.output", str(old), *QUIET]
    row = check_refused(scratch, args, 1, "No space left on device", "--prediction_writer.output")
    assert old.read_text() == "old\n"
    record(Row(row.command, row.exit, row.says, "the old predictions.csv, whole"))


# --- an output must never destroy an input, whatever the spelling


def _spellings(scratch: Scratch, target: Path, name: str) -> dict[str, str]:
    """The same file as a relative path with `..`, through a symbolic link and through a hard link."""
    links = scratch.folder(f"links-{name}")
    (links / "soft").symlink_to(target)
    os.link(target, links / "hard")
    return {
        "..": os.path.relpath(target, links / "sub"),
        "symlink": str(links / "soft"),
        "hard link": str(links / "hard"),
    }


def test_export_over_its_checkpoint(scratch: Scratch, record):
    """`export --output` the checkpoint it reads, through a symbolic link (other spellings: tests/test_files.py)"""
    spelling = "symlink"
    ckpt = scratch.root / "keep" / "model.ckpt"
    ckpt.parent.mkdir(exist_ok=True)
    ckpt.write_bytes(scratch.best.read_bytes())
    before = ckpt.read_bytes()
    output = _spellings(scratch, ckpt, "export")[spelling]
    cwd = scratch.root / "links-export" / "sub"
    cwd.mkdir(exist_ok=True)
    row = check_refused(
        scratch,
        ["export", "--ckpt_path", str(ckpt), "--output", output],
        1,
        "--output",
        "an input of this command",
        cwd=cwd,
        survived="the checkpoint, byte for byte",
    )
    assert ckpt.read_bytes() == before
    record(row)


@pytest.mark.parametrize(
    "what", ["a picture"]
)  # the checkpoint: the export case; config and MNIST files: tests/test_cli.py
def test_predictions_over_an_input(scratch: Scratch, record, what: str):
    """`predict --prediction_writer.output` an input of the command"""
    keep = scratch.folder(f"keep-{what.replace(' ', '-')}")
    data = keep / "data"
    shutil.copytree(scratch.data, data)
    ckpt = keep / "model.ckpt"
    ckpt.write_bytes(scratch.best.read_bytes())
    pictures = keep / "pictures"
    shutil.copytree(scratch.pictures(), pictures)
    config = keep / "predict.yaml"
    config.write_text(f"data:\n  data_dir: {data}\n")
    target = {
        "the checkpoint": ckpt,
        "a picture": next(pictures.iterdir()),
        "the config file": config,
        "an MNIST file": data / "MNIST" / "raw" / "t10k-labels-idx1-ubyte",
    }[what]
    before = target.read_bytes()
    source = ["--data.predict_path", str(pictures)] if what == "a picture" else []
    args = [
        "predict",
        "-c",
        str(config),
        "--ckpt_path",
        str(ckpt),
        *source,
        "--prediction_writer.output",
        str(target),
        *QUIET,
    ]
    row = check_refused(scratch, args, 1, "an input of this command", survived=f"{what}, byte for byte")
    assert target.read_bytes() == before
    record(Row(row.command.replace(str(keep) + "/", ""), row.exit, row.says.replace(str(keep) + "/", ""), row.survived))


@pytest.mark.parametrize("target", ["/dev/null", "a FIFO"])  # a symbolic link: tests/test_files.py
def test_predictions_into_what_is_not_a_regular_file(scratch: Scratch, record, target: str):
    """`predict --prediction_writer.output` a device or a FIFO"""
    cwd = scratch.folder(f"special-{target.replace(' ', '-').replace('/', '')}")
    args = ["predict", "--ckpt_path", str(scratch.best), *QUIET]
    if target == "/dev/null":  # a node of the same device: a bug must not replace the machine's own
        try:
            os.mknod(cwd / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
        except PermissionError:
            pytest.skip("making a device node needs root")
        result = scratch.cli(*args, "--prediction_writer.output", str(cwd / "null"), cwd=cwd)
        assert result.returncode == 0 and (cwd / "null").is_char_device(), result.stderr[-2000:]
        assert sorted(p.name for p in cwd.iterdir()) == ["null"]
        survived = "/dev/null, still the device"
    elif target == "a FIFO":
        fifo = cwd / "fifo.csv"
        os.mkfifo(fifo)
        reader = subprocess.Popen(["cat", str(fifo)], stdout=subprocess.PIPE, text=True)
        result = scratch.cli(*args, "--prediction_writer.output", str(fifo), cwd=cwd)
        streamed = reader.communicate(timeout=60)[0]
        assert result.returncode == 0 and stat.S_ISFIFO(fifo.stat().st_mode), result.stderr[-2000:]
        assert len(streamed.splitlines()) == 1 + 100  # the CSV came through the pipe
        survived = "the FIFO, which carried the 101 lines"
    else:
        real = cwd / "real.csv"
        real.write_text("old\n")
        (cwd / "link.csv").symlink_to(real)
        result = scratch.cli(*args, "--prediction_writer.output", str(cwd / "link.csv"), cwd=cwd)
        assert result.returncode == 0 and (cwd / "link.csv").is_symlink(), result.stderr[-2000:]
        assert len(real.read_text().splitlines()) == 101
        survived = "the link, still a link; its target holds the predictions"
    record(Row(scratch.shown([*args[:3], "--prediction_writer.output", target]), 0, "(writes into it)", survived))


def test_predictions_to_stdout(scratch: Scratch, record):
    """`predict --prediction_writer.output -`"""
    cwd = scratch.folder("stdout")
    args = [
        "predict",
        "--ckpt_path",
        str(scratch.best),
        "--prediction_writer.output",
        "-",
        "--trainer.enable_model_summary",
        "false",
    ]  # the progress bar left on: it must not go into the CSV
    result = scratch.cli(*args, cwd=cwd)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    assert lines[0] == "index,label,prediction,confidence,doubtful" and len(lines) == 101  # the CSV alone on stdout
    assert "Predicted 100 image(s)" in result.stderr and list(cwd.iterdir()) == []
    record(Row(scratch.shown(args), 0, "(the CSV on stdout, the summary on stderr)", "no file written"))


def test_report_into_a_folder_of_other_files(scratch: Scratch, record):
    """`report --output_dir` a folder holding files a report would write, not from this checkpoint"""
    out = scratch.folder("others")
    (out / "learning_curves.png").write_bytes(b"someone's figure")
    args = ["report", "--ckpt_path", str(scratch.best), "--output_dir", str(out), *QUIET]
    row = check_refused(
        scratch, args, 1, "learning_curves.png", "--output_dir", survived="runs: their file, byte for byte"
    )
    assert (out / "learning_curves.png").read_bytes() == b"someone's figure"
    record(row)


def test_export_to_a_name_of_the_other_format(scratch: Scratch, record):
    """`export --format pt2 --output x.onnx`"""
    record(
        check_refused(
            scratch,
            ["export", "--ckpt_path", str(scratch.best), "--format", "pt2", "--output", "x.onnx"],
            1,
            "--output x.onnx ends in .onnx, but --format is pt2",
        )
    )
