"""The three journeys as a user takes them: train and resume one run, look at it in a real
TensorBoard server, evaluate its checkpoints; plus the help and the Python classes."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from helpers.cli import CONFIG, cli, free_port, only_run, shell
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("journey")]  # every journey starts the CLI


@pytest.fixture(scope="module")
def journey(synthetic_mnist, tmp_path_factory):
    """fit, resume, validate, test, report, predict: each command's result, in one folder."""
    data_dir, arrays = synthetic_mnist
    cwd = tmp_path_factory.mktemp("journey")
    pictures = cwd / "pictures"
    pictures.mkdir()
    for i in range(3):
        Image.fromarray(arrays["t10k-images-idx3-ubyte"][i]).save(pictures / f"digit{i}.png")
    data = ["--data.data_dir", str(data_dir), "--data.batch_size", "32"]
    results = {"fit": cli("fit", "-c", str(CONFIG), *data, "--trainer.max_epochs", "2", cwd=cwd)}
    run = only_run(cwd)
    last, steps = run / "checkpoints" / "last.ckpt", ["--trainer.log_every_n_steps", "5"]
    results["resume"] = cli("fit", "--ckpt_path", str(last), "--trainer.max_epochs", "3", *steps, cwd=cwd)
    best = next((run / "checkpoints").glob("epoch*.ckpt"))
    results["validate"] = cli("validate", "--ckpt_path", str(best), cwd=cwd)
    # `test` as the end of the resumed fit prints it, pasted into a shell
    results["test"] = shell(next_command(results["resume"].stdout, "test"), cwd=cwd)
    results["report"] = cli("report", "--ckpt_path", str(best), cwd=cwd)
    results["predict"] = cli("predict", "--ckpt_path", str(best), "--data.predict_path", str(pictures), cwd=cwd)
    return cwd, run, results


def next_command(output: str, command: str) -> str:
    """The `mnist-lightning <command> ...` line of the block that ends a fit."""
    return next(line.strip() for line in output.splitlines() if line.strip().startswith(f"mnist-lightning {command} "))


@pytest.mark.parametrize("command", ["fit", "resume", "validate", "test", "report", "predict"])
def test_each_command_succeeds_without_a_warning(journey, command):
    _, _, results = journey
    result = results[command]
    assert result.returncode == 0, result.stderr[-3000:]
    warnings = [
        line for line in (result.stdout + result.stderr).splitlines() if re.search(r"warn", line, re.IGNORECASE)
    ]
    assert warnings == []


def test_the_journey_is_one_run(journey):
    cwd, run, results = journey
    assert only_run(cwd) == run  # resume and evaluations added no run
    assert (run / "report" / "metrics.json").is_file()
    assert len((cwd / "predictions.csv").read_text().splitlines()) == 1 + 3
    assert "Resuming" not in results["resume"].stdout  # nothing changed: no new settings to announce


@pytest.mark.parametrize("command", ["fit", "resume"])
def test_fit_ends_with_the_run_its_best_checkpoint_and_the_next_commands(journey, command):
    cwd, run, results = journey
    lines = results[command].stdout.splitlines()
    assert f"Run: runs/mnist/{run.name}" in lines
    (best,) = [line for line in lines if line.startswith("Best checkpoint (accuracy/val ")]
    score, path = re.fullmatch(r"Best checkpoint \(accuracy/val ([01]\.\d{4})\): (\S+)", best).groups()
    assert (cwd / path).is_file() and (cwd / path).parent == run / "checkpoints" and score in path
    for line in ("mnist-lightning test --ckpt_path", "mnist-lightning report --ckpt_path", "tensorboard --logdir runs"):
        assert any(line in text for text in lines[lines.index("Next:") :]), line
    assert results["test"].returncode == 0  # the pasted `test` line ran (the journey's own test step)


def test_evaluations_print_no_seed_or_hardware_lines(journey):
    _, _, results = journey
    for command in ("validate", "test", "report", "predict"):
        output = results[command].stdout + results[command].stderr
        assert "Seed set" not in output and "GPU available" not in output, command
    assert "GPU available" in results["fit"].stdout + results["fit"].stderr  # where a fit trains still shows


def test_fit_lists_the_network_layers_once_and_no_run_name_fragment(journey):
    _, run, results = journey
    output = results["fit"].stdout + results["fit"].stderr
    layers = re.findall(r"^net\.(\d+) \((\w+)\)", output, re.MULTILINE)
    assert [int(i) for i, _ in layers] == list(range(11)) and layers[0][1] == "Conv2d"
    assert (
        output.count("Total params: 225,034") == 1
        and "epoch_metrics" not in output
        and "Trainable params" not in output
    )
    assert "v_num" not in output and run.name[-4:] not in results["fit"].stderr  # the progress bar's


def test_predict_prints_its_summary_on_lines_of_its_own(journey):
    _, _, results = journey
    lines = results["predict"].stdout.splitlines()
    assert any(line.startswith("Predicted 3 image(s) -> predictions.csv") for line in lines)
    assert results["predict"].stdout.count("Predicted 3 image(s)") == 1


def _events(path: Path) -> EventAccumulator:
    events = EventAccumulator(str(path), size_guidance={"scalars": 0, "tensors": 0})
    events.Reload()
    return events


def test_fit_logs_the_settings_and_results_for_hparams(journey):
    _, run, _ = journey
    first = min(run.glob("events.out.tfevents.*"), key=lambda p: p.stat().st_mtime)  # the first fit's alone
    events = _events(first)
    content = events.PluginTagToContent("hparams")
    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"]).session_start_info
    assert start.hparams["model.lr"].number_value == pytest.approx(0.001)
    assert start.hparams["data.batch_size"].number_value == 32
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"]).experiment
    metrics = {info.name.tag for info in experiment.metric_infos}
    assert {"accuracy/val", "loss/val", "accuracy/test"} <= metrics and "accuracy/val" in events.Tags()["scalars"]


def test_test_and_report_of_one_checkpoint_log_its_results_once(journey):
    _, run, results = journey
    events = _events(run)
    epoch = int(re.search(r"epoch(\d+)", next((run / "checkpoints").glob("epoch*.ckpt")).name).group(1))
    assert [e.step for e in events.Scalars("accuracy/test")] == [epoch]
    assert [e.step for e in events.Scalars("loss/test")] == [epoch]
    assert "not logged again" in results["report"].stdout + results["report"].stderr
    assert len(list(run.glob("events.out.tfevents.*"))) == 4  # fit, resume, validate, test: report adds none


def _get(url: str) -> object:
    with urllib.request.urlopen(url, timeout=10) as response:
        body = response.read()
    return json.loads(body) if response.headers.get_content_type() == "application/json" else body


@pytest.fixture(scope="module")
def tensorboard(journey):
    """The real `tensorboard` server over the journey's runs/, on a free localhost port."""
    cwd, _, _ = journey
    port = free_port()
    tensorboard = Path(sys.executable).with_name("tensorboard")
    server = subprocess.Popen(
        [
            str(tensorboard),
            "--logdir",
            str(cwd / "runs"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--reload_interval",
            "1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:  # up once it serves the runs, with the test's images loaded
            try:
                if _get(f"{url}/data/plugin/images/tags"):
                    break
            except OSError:
                pass
            assert server.poll() is None and time.monotonic() < deadline, "tensorboard did not come up"
            time.sleep(1)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_tensorboard_shows_one_run_with_a_chart_per_stage(tensorboard, journey):
    """TensorBoard colours a chart's lines by run: training and validation go on charts of their own."""
    _, run, _ = journey
    assert _get(f"{tensorboard}/data/runs") == [f"mnist/{run.name}"]
    charts = {
        chart["title"]: chart["multiline"]["tag"]
        for category in _get(f"{tensorboard}/data/plugin/custom_scalars/layout")["category"]
        for chart in category["chart"]
    }
    tags = _get(f"{tensorboard}/data/plugin/scalars/tags")[f"mnist/{run.name}"]
    for quantity in ("loss", "accuracy"):
        training = [t for t in tags if any(re.match(p, t) for p in charts[f"{quantity}, training (per epoch)"])]
        validation = [t for t in tags if any(re.match(p, t) for p in charts[f"{quantity}, validation (per epoch)"])]
        assert training == [f"{quantity}/train"]
        assert sorted(validation) == sorted([f"{quantity}/val", f"{quantity}/test", f"{quantity}/validate"])
    assert "epoch" not in tags
    # TensorBoard's default view: an accuracy and a loss section, every stage's card in them.
    assert sorted({t.split("/")[0] for t in tags}) == ["accuracy", "loss"]


def test_curves_continue_across_the_resume_by_epoch(tensorboard, journey):
    _, run, _ = journey
    query = f"run=mnist/{run.name}&tag=accuracy/val&format=json"
    points = _get(f"{tensorboard}/data/plugin/scalars/scalars?{query}")
    assert [step for _, step, _ in points] == [0, 1, 2]  # two epochs, then the resumed third, in one series


def test_tensorboard_shows_the_test_results_and_confusion_matrix_in_the_run(tensorboard, journey):
    _, run, _ = journey
    images = _get(f"{tensorboard}/data/plugin/images/tags")[f"mnist/{run.name}"]
    assert "test_confusion_matrix" in images
    query = f"run=mnist/{run.name}&tag=test_confusion_matrix&sample=0"
    (image,) = _get(f"{tensorboard}/data/plugin/images/images?{query}")[-1:]
    png = _get(f"{tensorboard}/data/plugin/images/individualImage?{image['query']}")
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert 300 <= min(width, height) and max(width, height) <= 480  # drawn for the image card, not shrunk into it


def test_help_says_what_the_tool_does(tmp_path):
    result = cli("--help", cwd=tmp_path)
    assert result.returncode == 0
    assert "Lightning Trainer command line tool" not in result.stdout
    assert "MNIST digit classifier" in result.stdout
    listing = result.stdout.split("Available subcommands:")[1]
    for command in ("fit", "validate", "test", "predict", "report"):
        line = re.search(rf"^    {command} +(.+(?:\n {{20,}}.+)*)", listing, re.MULTILINE).group(1)
        assert " ".join(line.split()).endswith("."), line  # a whole sentence, not cut off


def test_every_model_and_data_option_is_described(tmp_path):
    result = cli("fit", "--help", "all", cwd=tmp_path)
    blocks = re.findall(r"^  (--(?:model|data)\.\w+)(.*\n(?: {20,}.*\n)*)", result.stdout, re.MULTILINE)
    assert len(blocks) >= 15
    for option, block in blocks:
        described = re.sub(r"\{.*?\}|\S*[A-Z_]{2,}\S*", "", block.split("(type:")[0])  # without metavars
        assert re.search(r"[a-z]{3,}", described), f"{option} has no description: {block}"
    titles = re.findall(r"^(\S.*):$", result.stdout, re.MULTILINE)
    assert all(len(title) < 80 for title in titles), titles


def test_python_users_get_the_classes_and_importing_them_changes_nothing(synthetic_mnist, tmp_path):
    data_dir, _ = synthetic_mnist
    script = f"""
import logging, warnings
import lightning as L, torchmetrics, torchvision, jsonargparse  # what they install on import is theirs
def filters():
    return list(warnings.filters), [(n, list(logging.getLogger(n).filters)) for n in logging.root.manager.loggerDict]
before = filters()
import mnist_lightning.training
from mnist_lightning import MNISTClassifier, MNISTDataModule, MNISTNet
assert filters() == before
assert sum(p.numel() for p in MNISTNet().parameters()) == 225_034
trainer = L.Trainer(max_epochs=2, enable_progress_bar=False)
trainer.fit(MNISTClassifier(lr=0.003), MNISTDataModule({str(data_dir)!r}, batch_size=32))
print("val_acc", float(trainer.callback_metrics["accuracy/val"]))
"""
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, check=False, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert float(result.stdout.split("val_acc")[1]) > 0.5  # it learnt: chance is 0.1


def test_what_the_tool_writes_by_default_is_ignored_by_git():
    root = Path(__file__).resolve().parents[1]
    if not (root / ".git").exists():
        pytest.skip("not a git checkout")
    written = ["runs/mnist/2026-12-02_13-29-32/last.ckpt", "data/MNIST/raw/t10k-images-idx3-ubyte", "predictions.csv"]
    result = subprocess.run(["git", "check-ignore", *written], cwd=root, capture_output=True, text=True, check=False)
    assert result.stdout.split() == written
