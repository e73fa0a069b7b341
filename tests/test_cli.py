"""The console script end to end: fit, then test from the checkpoint alone."""

from __future__ import annotations

import gc
import math
import runpy
import shutil
import sys

import lightning as L
import pytest
import torch
from helpers.cli import CONFIG, QUIET, cli, only_run
from helpers.mnist import N_TRAIN
from lightning.pytorch.callbacks import ModelCheckpoint, ModelSummary
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from mnist_lightning import cli as cli_module
from mnist_lightning.checkpoint import load_checkpoint
from mnist_lightning.cli import MNISTCLI
from mnist_lightning.data import MNISTDataModule
from mnist_lightning.errors import UserError
from mnist_lightning.logger import scalar_events
from mnist_lightning.module import MNISTClassifier
from mnist_lightning.parser import invoked_subcommand
from mnist_lightning.predict import CSVPredictionWriter
from mnist_lightning.quiet import QuietLightning
from mnist_lightning.report import run_scalars as scalars
from mnist_lightning.summaries import LayerSummary


@pytest.mark.slow
def test_fit_prints_keras_style_summary(fitted_run):
    _, _, result = fitted_run
    assert "Total params: 225,034" in result.stdout + result.stderr


@pytest.mark.slow
def test_fit_prints_no_lines_a_user_cannot_act_on(fitted_run):
    _, _, result = fitted_run
    output = result.stdout + result.stderr
    for noise in (*QuietLightning.NOISE, "LeafSpec"):
        assert noise not in output
    assert "GPU available" in output  # Lightning's other info lines still show


@pytest.mark.parametrize("summary", [ModelSummary, LayerSummary], ids=["lightning", "ours"])
def test_the_summary_warns_of_mixed_precision_only_in_lightning(summary, synthetic_mnist, recwarn):
    """Lightning's summary calls its size estimate inaccurate under bf16-mixed, whose weights
    are float32 all the same; LayerSummary keeps quiet (and stops here once Lightning does)."""
    data_dir, _ = synthetic_mnist
    trainer = L.Trainer(
        precision="bf16-mixed",
        max_steps=1,
        limit_val_batches=0,
        callbacks=[summary()],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
    )
    trainer.fit(MNISTClassifier(), MNISTDataModule(data_dir=str(data_dir), batch_size=32))
    warned = any("not supported by the model summary" in str(w.message) for w in recwarn)
    assert warned == (summary is ModelSummary)


@pytest.mark.slow
def test_fit_writes_one_run_directory(fitted_run):
    cwd, run, _ = fitted_run
    assert sorted(p.name for p in cwd.iterdir()) == ["runs"]  # nothing strewn outside the run directory
    assert (run / "config.yaml").is_file() and (run / "hparams.yaml").is_file()
    checkpoints = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert "last.ckpt" in checkpoints
    # last.ckpt is the latest epoch even when val_acc stopped improving (it is 1.0 here early on)
    assert load_checkpoint(run / "checkpoints" / "last.ckpt")["epoch"] == 2
    assert any(name.startswith("epoch") and "val_acc" in name for name in checkpoints)


@pytest.mark.slow
def test_event_files_hold_train_and_val_curves(fitted_run):
    _, run, _ = fitted_run
    values, events = scalars(run), scalar_events(run)
    for tag in ("loss/train", "accuracy/train", "loss/val", "accuracy/val"):
        assert [e.step for e in events[tag]] == [0, 1, 2], tag  # one point per epoch, plotted by epoch
    assert "epoch" not in values  # Lightning's own epoch series says nothing the x-axis does not
    # the step loss exactly on the steps the logger writes: every 5th (log_every_n_steps)
    steps_per_epoch = math.ceil(N_TRAIN * 0.9 / 32)
    assert [e.step for e in events["loss/train_step"]] == list(range(4, 3 * steps_per_epoch, 5))
    assert values["loss/train"][-1] < values["loss/train"][0]
    assert values["accuracy/val"][-1] > 0.9  # the synthetic digits are easy


@pytest.mark.slow
def test_test_rebuilds_everything_from_the_checkpoint(fitted_run):
    cwd, run, _ = fitted_run
    best = next((run / "checkpoints").glob("epoch*.ckpt"))
    # No config and no --data.data_dir: both come from the checkpoint.
    result = cli("test", "--ckpt_path", str(best), "--trainer.enable_progress_bar", "false", cwd=cwd)
    assert result.returncode == 0, result.stderr[-3000:]
    # Lightning's warning that the checkpoint callbacks' directory changed (the new
    # run's): true, and nothing to do with evaluating, which writes no checkpoints.
    assert "dirpath has changed" not in result.stderr
    assert "No seed found" not in result.stderr  # nor that no seed was given: evaluating draws no random numbers
    test_run = only_run(cwd)  # the results join the checkpoint's own run
    values = scalars(test_run)
    assert values["accuracy/test"][0] > 0.9
    assert 0 < values["loss/test"][0] < 1
    # The end of `test` puts the confusion matrix into TensorBoard's images and the
    # test metrics beside the hyperparameters (the HPARAMS tab).
    events = EventAccumulator(str(test_run))
    events.Reload()
    assert "test_confusion_matrix" in events.Tags()["images"]
    assert "_hparams_/session_start_info" in events.PluginTagToContent("hparams")


@pytest.mark.parametrize("command", ["validate", "test", "predict", "report"])
def test_evaluating_without_a_checkpoint_is_one_clear_line(command, tmp_path, monkeypatch, capsys):
    # Lightning would evaluate a freshly initialised network: ~10% accuracy, exit status 0.
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        cli_module.main([command])
    assert exit_.value.code == 1
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and f"{command} needs a trained network: --ckpt_path CKPT" in err
    assert "mnist-lightning fit -c configs/mnist.yaml" in err  # what to do when there is no run yet


@pytest.mark.slow
def test_evaluating_without_a_checkpoint_names_the_best_of_the_newest_run(fitted_run, monkeypatch, capsys):
    cwd, run, _ = fitted_run
    (best,) = (run / "checkpoints").glob("epoch*.ckpt")
    (run / "checkpoints" / "last.ckpt").touch()  # the newest file, but not the best
    monkeypatch.chdir(cwd)
    with pytest.raises(SystemExit):
        cli_module.main(["test"])
    assert capsys.readouterr().err.endswith(f"(the best of the newest run is {best.relative_to(cwd)})\n")


@pytest.mark.slow
def test_a_chosen_profiler_reports(synthetic_mnist, tmp_path):
    data_dir, _ = synthetic_mnist
    result = cli(
        "fit",
        "-c",
        str(CONFIG),
        "--data.data_dir",
        str(data_dir),
        "--trainer.max_epochs",
        "1",
        "--trainer.profiler",
        "simple",
        "--trainer.enable_progress_bar",
        "false",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Profiler Report" in result.stdout + result.stderr
    assert "run_training_batch" in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("subcommand", "kept"),
    [
        (None, {ModelCheckpoint}),  # run=False, as scripts/ use it: set up to fit
        ("fit", {ModelCheckpoint}),
        # Evaluations keep the checkpoint callbacks: Lightning restores their state from the
        # checkpoint, and warns for each one that is missing.
        ("test", {ModelCheckpoint}),
        ("predict", {ModelCheckpoint, CSVPredictionWriter}),
    ],
)
def test_each_subcommand_keeps_only_the_callbacks_it_uses(subcommand, kept, tiny_checkpoint, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    if subcommand is None:
        cli = MNISTCLI(args=["-c", str(CONFIG)], run=False)
    else:
        monkeypatch.setattr(MNISTCLI, "_run_subcommand", lambda self, subcommand: None)  # set up, do not run
        checkpoint = [] if subcommand == "fit" else ["--ckpt_path", str(tiny_checkpoint)]
        cli = MNISTCLI(args=[subcommand, "-c", str(CONFIG), *checkpoint])
    present = {
        kind
        for kind in (ModelCheckpoint, CSVPredictionWriter)
        if any(isinstance(c, kind) for c in cli.trainer.callbacks)
    }
    assert present == kept


@pytest.mark.parametrize("enabled", [True, False])
def test_the_summary_flag_switches_our_summary(enabled, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cli = MNISTCLI(args=["-c", str(CONFIG), f"--trainer.enable_model_summary={enabled}"], run=False)
    assert any(isinstance(c, LayerSummary) for c in cli.trainer.callbacks) == enabled


@pytest.mark.parametrize("config", sorted(CONFIG.parent.glob("*.yaml")), ids=lambda path: path.name)
def test_every_shipped_config_maps_onto_the_classes(config, tmp_path, monkeypatch):
    """A misspelt or stale key in configs/ fails here, not in a user's first run."""
    monkeypatch.chdir(tmp_path)
    cli = MNISTCLI(args=["-c", str(config)], run=False)
    assert isinstance(cli.model, MNISTClassifier) and isinstance(cli.datamodule, MNISTDataModule)


@pytest.mark.parametrize("command", ["validate", "test", "predict", "report", "export", "serve"])
def test_an_evaluation_may_not_change_the_scaling_the_weights_were_trained_with(
    command, tiny_checkpoint, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        cli_module.main([command, "--ckpt_path", str(tiny_checkpoint), "--data.standardize", "true"])
    err = capsys.readouterr().err
    assert exit_.value.code == 1 and "--data.standardize false, but this command sets true" in err
    assert list(tmp_path.iterdir()) == []


def test_settings_that_do_not_change_the_result_stay_free(tiny_checkpoint, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(MNISTCLI, "_run_subcommand", lambda self, subcommand: None)  # set up, do not run
    cli = MNISTCLI(
        args=["test", "--ckpt_path", str(tiny_checkpoint), "--data.eval_batch_size", "7", "--data.num_workers", "1"]
    )
    assert (cli.datamodule.eval_batch_size, cli.datamodule.num_workers) == (7, 1)


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--format", "pt2", "--output", "x.onnx"], "--output x.onnx ends in .onnx, but --format is pt2"),
        (["--format", "onnx", "--output", "x.pt2"], "--output x.pt2 ends in .pt2, but --format is onnx"),
    ],
)
def test_export_refuses_a_file_name_of_the_other_format(args, fragment, tiny_checkpoint, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit):
        cli_module.main(["export", "--ckpt_path", str(tiny_checkpoint), *args])
    assert fragment in capsys.readouterr().err and list(tmp_path.iterdir()) == []


def test_a_config_given_with_an_equals_sign_is_named_when_broken(tmp_path, monkeypatch, capsys):
    (tmp_path / "bad.yaml").write_text("trainer:\n  max_epochs: [1\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit):
        cli_module.main(["fit", "--config=bad.yaml"])
    assert "config file bad.yaml is not valid YAML at line 3" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("value", "debugging"), [("0", False), ("", False), ("false", False), ("1", True), ("yes", True)]
)
def test_debugging_is_on_only_when_asked_for(value, debugging, tmp_path, monkeypatch):
    monkeypatch.setenv("MNIST_LIGHTNING_DEBUG", value)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError if debugging else SystemExit):  # the traceback's exception, or the one-line exit
        cli_module.main(["test", "--ckpt_path", "nowhere.ckpt"])


def test_a_dangling_last_checkpoint_and_a_folder_named_ckpt_are_not_offered(tmp_path, monkeypatch, capsys):
    run = tmp_path / "runs" / "mnist" / "r" / "checkpoints"
    run.mkdir(parents=True)
    (run / "epoch01-val_acc0.9000.ckpt").write_bytes(b"x")
    (run / "last.ckpt").symlink_to(run / "gone.ckpt")
    (run / "x.ckpt").mkdir()
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit):
        cli_module.main(["test"])
    assert capsys.readouterr().err.endswith(
        "(the best of the newest run is runs/mnist/r/checkpoints/epoch01-val_acc0.9000.ckpt)\n"
    )


@pytest.mark.parametrize("kind", ["config", "mnist"])
def test_an_output_over_a_config_or_mnist_file_is_refused(
    kind, tiny_checkpoint, synthetic_mnist, tmp_path, monkeypatch, capsys
):
    data = tmp_path / "data"
    shutil.copytree(synthetic_mnist[0], data)
    config = tmp_path / "predict.yaml"
    config.write_text(f"data:\n  data_dir: {data}\n")
    target = config if kind == "config" else data / "MNIST" / "raw" / "t10k-images-idx3-ubyte"
    before = target.read_bytes()
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit):
        cli_module.main(
            [
                "predict",
                "-c",
                str(config),
                "--ckpt_path",
                str(tiny_checkpoint),
                "--prediction_writer.output",
                str(target),
            ]
        )
    assert "an input of this command" in capsys.readouterr().err and target.read_bytes() == before


def test_python_dash_m_runs_the_command(monkeypatch, capsys):
    """`python -m mnist_lightning` is the console script: its help, exit status 0."""
    monkeypatch.setattr(sys, "argv", ["mnist_lightning", "--help"])
    try:
        with pytest.raises(SystemExit) as exit_:
            runpy.run_module("mnist_lightning", run_name="__main__")
    finally:
        gc.unfreeze()  # the console freezes what exists for a quick exit; this process goes on
    assert exit_.value.code == 0 and "MNIST digit classifier" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["fit", "-c", "x.yaml"], "fit"),
        (["-c", "test", "report"], "report"),
        (["--config", "a.yaml", "predict"], "predict"),
        (["--help"], None),
        (["fitt"], None),
        (["fit", "--data.predict_path", "test"], "fit"),
        ([], None),
    ],
)
def test_only_the_typed_subcommand_gets_a_parser(argv, expected):
    every = MNISTCLI.__new__(MNISTCLI)
    every.argv = argv
    assert invoked_subcommand(argv, {name: set() for name in SUBCOMMANDS}) == expected
    assert list(every.subcommands()) == ([expected] if expected else SUBCOMMANDS)


SUBCOMMANDS = ["fit", "validate", "test", "predict", "report", "export", "serve"]


def test_a_second_command_in_one_process_continues_the_run(synthetic_mnist, tmp_path, monkeypatch):
    """The run's lock is the command's, not the process's: main() twice in a notebook resumes the run."""
    monkeypatch.chdir(tmp_path)
    short = [
        "--trainer.limit_train_batches",
        "3",
        "--trainer.limit_val_batches",
        "1",
        "--trainer.log_every_n_steps",
        "1",
    ]
    short += QUIET
    cli_module.main(["fit", "--data.data_dir", str(synthetic_mnist[0]), "--trainer.max_epochs", "1", *short])
    run = only_run(tmp_path)
    last = run / "checkpoints" / "last.ckpt"
    cli_module.main(
        ["fit", "-c", str(run / "config.yaml"), "--ckpt_path", str(last), "--trainer.max_epochs", "2", *short]
    )
    assert only_run(tmp_path) == run and torch.load(last, weights_only=True)["epoch"] == 1
