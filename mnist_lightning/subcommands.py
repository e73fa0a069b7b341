"""The subcommands: Lightning's fit, validate, test and predict, described for the command
line, and this project's report, export and serve."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from lightning.pytorch import Trainer

from mnist_lightning.callbacks import TestResults
from mnist_lightning.data import MNISTDataModule
from mnist_lightning.errors import UserError
from mnist_lightning.module import MNISTClassifier
from mnist_lightning.settings import export_path


def _described(method: Callable, summary: str, ckpt_path: str) -> Callable:
    """`method` under a summary and argument texts written for the command line (Lightning's
    are written for Python callers); its signature is read through __wrapped__."""

    @functools.wraps(method)
    def subcommand(self: Trainer, *args: Any, **kwargs: Any) -> Any:
        return method(self, *args, **kwargs)

    subcommand.__doc__ = f"""{summary}

    Args:
        ckpt_path: {ckpt_path}
        weights_only: Lightning's loading option; every checkpoint is first checked and read weights-only here.
        verbose: Print the results table.
        return_predictions: Keep the predictions in memory (predict writes them to the CSV file anyway).
    """
    return subcommand


EVALUATED = (
    "The checkpoint to use; the model's and data's settings are read from it (without it, the command "
    "names the newest run's best checkpoint)."
)


class MNISTTrainer(Trainer):
    """How to train and evaluate (Lightning's Trainer settings)."""

    # Lightning's docstrings are written for Python callers; the CLI lists these first lines.
    fit = _described(
        Trainer.fit,
        "Train the network, or resume a run with --ckpt_path.",
        "A checkpoint to resume: RUN/checkpoints/last.ckpt continues that run in its folder, with "
        "its settings as the defaults (options given now win).",
    )
    validate = _described(Trainer.validate, "Evaluate a checkpoint on the validation split.", EVALUATED)
    test = _described(Trainer.test, "Evaluate a checkpoint on the MNIST test set.", EVALUATED)
    predict = _described(Trainer.predict, "Classify your own pictures (or the test set) into a CSV file.", EVALUATED)

    def report(
        self,
        model: MNISTClassifier,
        datamodule: MNISTDataModule,
        ckpt_path: str | None = None,
        output_dir: str | None = None,
    ) -> None:
        """Evaluate a checkpoint on the test set and write metrics, a confusion matrix and curves.

        Args:
            ckpt_path: The checkpoint; model and data settings are read from it.
            output_dir: Where to write; default: report/ in the checkpoint's run folder, or
                <checkpoint name>-report/ beside a checkpoint kept outside a run. Files that
                an earlier report of another checkpoint (or anyone else) wrote there are never replaced.
        """
        from mnist_lightning.report import write_report  # matplotlib and seaborn load only here

        assert ckpt_path is not None and output_dir is not None  # the CLI has checked and chosen them
        results = next((c for c in self.callbacks if isinstance(c, TestResults)), None)
        if results is None:
            results = TestResults()
            self.callbacks.append(results)
        (scores,) = self.test(model, datamodule=datamodule, ckpt_path=ckpt_path, verbose=False)
        if self.is_global_zero:
            try:
                write_report(results, datamodule, scores["loss/test"], ckpt_path, Path(output_dir))
            except OSError as err:
                raise UserError(
                    f"cannot write the report into {err.filename or output_dir}: {err.strerror}. "
                    "Free space, or choose another folder with --output_dir DIR"
                ) from err

    def export(
        self,
        model: MNISTClassifier,
        datamodule: MNISTDataModule,
        ckpt_path: str | None = None,
        output: str | None = None,
        format: Literal["onnx", "pt2"] = "onnx",
    ) -> None:
        """Write a checkpoint as ONNX or a torch.export program that runs without this package.

        Args:
            ckpt_path: The checkpoint; its network and pixel scaling are exported.
            output: The file to write; default: beside the checkpoint, named after it (.onnx or .pt2).
            format: onnx (for ONNX Runtime and other engines) or pt2 (torch.export, for PyTorch).
        """
        try:  # the exporters load only here
            from mnist_lightning.export import export, from_checkpoint, metadata
        except ImportError as err:
            raise UserError(f"export needs {err.name}: pip install -e '.[export]'") from err
        assert ckpt_path is not None  # parse_arguments refused a missing one
        path = export_path(ckpt_path, output, format)
        try:
            export(
                from_checkpoint(model, datamodule, ckpt_path),
                path,
                format,
                metadata(ckpt_path, datamodule.scale, datamodule.shift),
            )
        except OSError as err:
            raise UserError(
                f"cannot write {err.filename or path}: {err.strerror}. Free space, or choose another "
                "file with --output FILE"
            ) from err
        print(f"Exported {ckpt_path} -> {path} ({path.stat().st_size / 1e6:.2f} MB, {format})")

    def serve(
        self,
        model: MNISTClassifier,
        datamodule: MNISTDataModule,
        ckpt_path: str | None = None,
        host: str = "127.0.0.1",
        port: int = 8000,
        workers: int = 1,
    ) -> None:
        """Serve a checkpoint over HTTP (LitServe), with a page to draw a digit on.

        Args:
            ckpt_path: The checkpoint to serve.
            host: The address to listen on: 127.0.0.1 (or localhost: this machine only), 0.0.0.0
                (every IPv4 interface) or :: (every IPv6 interface).
            port: The port, 1024 to 65535: POST /predict classifies a picture, GET / is the drawing page.
            workers: Inference processes, at least 1.
        """
        try:  # LitServe loads only here
            from mnist_lightning.export import from_checkpoint
            from mnist_lightning.serve import check_options, server
        except ImportError as err:
            raise UserError(f"serve needs {err.name}: pip install -e '.[serve]'") from err
        assert ckpt_path is not None  # parse_arguments refused a missing one
        host = check_options(host, port, workers)
        served = server(from_checkpoint(model, datamodule, ckpt_path), workers)
        print(f"Serving {ckpt_path} at http://{host}:{port}/ (Ctrl-C stops)", flush=True)
        served.run(host=host, port=port, generate_client_file=False)
        print("Server stopped", flush=True)
