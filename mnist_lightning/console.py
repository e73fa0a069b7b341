"""The `mnist-lightning` command. A config or checkpoint file named on its command line that
cannot be used is refused before Lightning is imported, which is most of a command's start
(docs/speed.md); the CLI checks them again for callers of `cli.main()`."""

from __future__ import annotations

import gc
import itertools
import sys
from pathlib import Path

import yaml

from mnist_lightning.errors import UserError, debugging

# Options that print and exit: what they print is wanted even when a file named beside them is bad.
PRINT_ONLY = ("-h", "--help", "--print_config")


def console() -> None:
    """The `mnist-lightning` command: the early checks, cli.main(), then a quick exit.

    What the command made lives until the process ends; freezing it at the end spares the
    interpreter's garbage collections over torch's and Lightning's objects at exit (docs/speed.md).
    """
    # The imports below make millions of objects that live as long as the process, and Python's
    # collector would walk them again and again while they load: a sixth of a start (docs/speed.md).
    gc.disable()
    try:
        refuse_unusable_files(sys.argv[1:])
        from mnist_lightning.cli import main  # Lightning, torchmetrics, torchvision: only for a command that can run
    except UserError as err:
        if debugging():
            raise
        sys.exit(f"mnist-lightning: error: {err}")
    finally:
        gc.freeze()  # what the imports made: later collections skip it
        gc.enable()
    try:
        main()
    finally:
        gc.freeze()


def refuse_unusable_files(argv: list[str]) -> None:
    """UserError for a -c/--config file that is not valid YAML, or a --ckpt_path that is not a
    checkpoint of this network (checkpoint.load_checkpoint says why)."""
    if any(arg.split("=", 1)[0] in PRINT_ONLY for arg in argv):
        return
    check_config_files(argv)
    ckpt_paths = option_values(argv, "--ckpt_path")
    if ckpt_paths and ckpt_paths[-1].lower() not in ("", "null", "none"):  # the parser keeps the last one
        from mnist_lightning.checkpoint import load_checkpoint  # torch: imported once console() stopped the collector

        load_checkpoint(ckpt_paths[-1])


def option_values(argv: list[str], *names: str) -> list[str]:
    """The values given to the options `names`, as `--name VALUE` or `--name=VALUE`, in order."""
    values = []
    for flag, value in itertools.pairwise([*argv, ""]):
        if flag in names:
            values.append(value)
        elif flag.split("=", 1)[0] in names and "=" in flag:
            values.append(flag.split("=", 1)[1])
    return values


def config_files(argv: list[str]) -> list[str]:
    """The files given with -c/--config."""
    return option_values(argv, "-c", "--config")


def check_config_files(argv: list[str]) -> None:
    """UserError naming a -c/--config file that is not valid YAML (the parser would say "<unicode string>")."""
    for value in config_files(argv):
        if Path(value).is_file():
            try:
                yaml.safe_load(Path(value).read_text())
            except yaml.YAMLError as err:
                mark = getattr(err, "problem_mark", None)
                where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
                raise UserError(
                    f"config file {value} is not valid YAML{where}: {getattr(err, 'problem', err)}"
                ) from err
