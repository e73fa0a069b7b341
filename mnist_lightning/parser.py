"""The command line's parser: one-line errors, and help that shows what a subcommand uses first."""

from __future__ import annotations

import argparse
import copy
import fnmatch
import re
import sys
from typing import Any, NoReturn

from jsonargparse import ActionConfigFile
from lightning.pytorch.cli import LightningArgumentParser

TRAINER_ESSENTIALS = ("trainer.accelerator", "trainer.devices", "trainer.enable_progress_bar")
# The options each subcommand's --help lists (by destination; `--help all` lists every one).
# Evaluations read the model's and the data's settings from the checkpoint.
SHOWN = {
    "fit": (
        "config",
        "ckpt_path",
        "seed_everything",
        "model.*",
        "data.*",
        "trainer.max_epochs",
        "trainer.precision",
        "trainer.check_val_every_n_epoch",
        "trainer.log_every_n_steps",
        *TRAINER_ESSENTIALS,
    ),
    "validate": (
        "config",
        "ckpt_path",
        "data.data_dir",
        "data.eval_batch_size",
        "data.num_workers",
        *TRAINER_ESSENTIALS,
    ),
    "test": ("config", "ckpt_path", "data.data_dir", "data.eval_batch_size", "data.num_workers", *TRAINER_ESSENTIALS),
    "report": ("config", "ckpt_path", "output_dir", "data.data_dir", "data.eval_batch_size", *TRAINER_ESSENTIALS),
    "predict": (
        "config",
        "ckpt_path",
        "data.predict_path",
        "data.data_dir",
        "data.eval_batch_size",
        "prediction_writer.*",
        *TRAINER_ESSENTIALS,
    ),
    "export": ("config", "ckpt_path", "output", "format"),
    "serve": ("config", "ckpt_path", "host", "port", "workers"),
}
HIDDEN_IN_FIT = ("data.predict_path", "data.eval_batch_size", "data.num_workers")
# Short texts for the short help (Lightning's own are written for Python callers, up to 20 lines each).
SHORT_HELP = {
    "seed_everything": "The run's random seed (configs/ use 42); true draws one. Evaluations do not seed.",
    "trainer.max_epochs": "Epochs to train; 10 in the notebook.",
    "trainer.accelerator": "cpu, gpu, mps or auto (the fastest there is).",
    "trainer.devices": "Devices to use (a number or a list); with several, one process each (DDP).",
    "trainer.strategy": "auto, or ddp for several processes (gloo on CPU).",
    "trainer.num_nodes": "Machines of a multi-node run (SLURM: srun starts one task per device).",
    "trainer.precision": "32-true (the notebook), bf16-mixed (configs/fast.yaml on CPUs with AVX512-BF16), 16-mixed.",
    "trainer.check_val_every_n_epoch": "Validate after every N epochs; 1 by default.",
    "trainer.log_every_n_steps": "Log the training loss every N steps; 50 by default.",
    "trainer.enable_progress_bar": "Show the progress bar; true by default.",
}


class Help(argparse._HelpAction):  # argparse has no public base for a help option with a value
    """-h/--help: the options this subcommand uses, with their meaning; `--help all`: every option."""

    def __init__(
        self,
        option_strings: list[str],
        dest: str = argparse.SUPPRESS,
        default: Any = argparse.SUPPRESS,
        help: str | None = None,
    ) -> None:
        super().__init__(option_strings, dest=dest, default=default, help=help)
        self.nargs = "?"
        self.metavar = "all"

    def __call__(
        self, parser: argparse.ArgumentParser, namespace: Any, values: Any, option_string: str | None = None
    ) -> None:
        if values not in (None, "all"):
            parser.error(f"--help takes nothing or `all`, not {values!r}")
        parser.full_help = values == "all"  # type: ignore[attr-defined]
        parser.print_help()
        parser.exit()


class OneLineParser(LightningArgumentParser):
    """LightningCLI's parser, whose errors are one line (jsonargparse prints usage and a
    message that can span lines); a config file that is not valid YAML is named."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **{**kwargs, "add_help": False})
        self.full_help = False
        self.add_argument(
            "-h",
            "--help",
            action=Help,
            help="Show the options this command uses and exit; "
            "`--help all`: every option, Lightning's Trainer settings included.",
        )

    def format_help(self, *args: Any) -> str:
        """A subcommand's help lists the options it uses (SHOWN); with `--help all`, every option."""
        subcommand = self.prog.split()[-1]
        if self.full_help or subcommand not in SHOWN:
            return super().format_help(*args)
        shown = SHOWN[subcommand]

        def wanted(action: argparse.Action) -> bool:
            if isinstance(action, Help):
                return True
            if subcommand == "fit" and action.dest in HIDDEN_IN_FIT:
                return False
            return any(fnmatch.fnmatchcase(action.dest, pattern) for pattern in shown) and not action.dest.endswith(
                ".help"
            )

        def short(action: argparse.Action) -> argparse.Action:
            """The action with its short text and its default, without jsonargparse's type annotation."""
            if isinstance(action, (Help, ActionConfigFile)) or not action.help:
                return action
            shown = copy.copy(action)
            shown.help = SHORT_HELP.get(action.dest, action.help).replace("%", "%%")
            if action.default not in (None, argparse.SUPPRESS) and action.dest not in SHORT_HELP:
                shown.help += f" (default: {action.default})"
            shown._jsonargparse_preexpanded_help = True  # type: ignore[attr-defined]  # printed as given
            return shown

        # argparse formats self._action_groups and offers no public way to format a selection of them.
        groups, usage, epilog = self._action_groups, self.usage, self.epilog
        selected = []
        for group in groups:
            trainer = any(a.dest.startswith("trainer.") for a in group._group_actions)
            title = "Lightning's Trainer, the settings used most" if trainer else group.title
            kept = argparse._ArgumentGroup(self, title=title, description=None)
            kept._group_actions = [short(a) for a in group._group_actions if wanted(a)]
            selected.append(kept)
        # The command's own options first (its checkpoint leading), Lightning's Trainer last.
        selected.sort(
            key=lambda group: (
                group.title.startswith("Lightning's Trainer"),
                not any(a.dest == "ckpt_path" for a in group._group_actions),
            )
        )
        self._action_groups = selected
        self.usage = f"{self.prog.replace(' [options]', '')} [-c CONFIG] [--OPTION VALUE ...]"
        self.epilog = (
            f"Every option, Lightning's Trainer settings included: {self.prog.replace(' [options]', '')} --help all"
        )
        try:
            return super().format_help(*args)
        finally:
            self._action_groups, self.usage, self.epilog = groups, usage, epilog

    def error(self, message: str, ex: Exception | None = None) -> NoReturn:
        if not self.exit_on_error:
            super().error(message, ex)
        message = " ".join(message.replace("<unicode string>", "the config file").split())
        # jsonargparse's words for a value outside a restricted type's range, as an option and its limits
        restricted = re.fullmatch(
            r'Parser key "([\w.]+)": Not of type \w+: (\S+) does not conform to restriction (.+)', message
        )
        if restricted:
            key, value, limits = restricted.groups()
            limits = re.sub(r"\bv\b", key.split(".")[-1], limits)
            message = f"--{key} {value} is out of range: it must be {limits}"
        print(f"mnist-lightning: error: {message} (see {self.prog.replace(' [options]', '')} --help)", file=sys.stderr)
        sys.exit(2)


def invoked_subcommand(argv: list[str], names: dict[str, Any]) -> str | None:
    """The subcommand named on the command line (not a -c/--config file that happens to be named
    like one), or None."""
    for i, arg in enumerate(argv):
        if arg in names and (i == 0 or argv[i - 1] not in ("-c", "--config")):
            return arg
        if not arg.startswith("-") and (i == 0 or argv[i - 1] not in ("-c", "--config")):
            return None  # a word that is no subcommand: the parser will say so, listing them
    return None


def plain(value: Any) -> Any:
    """A setting with jsonargparse's restricted types (PositiveInt, ...) as the int or float it is:
    checkpoints then hold only Python's own types, which load weights-only."""
    if isinstance(value, (list, tuple)):
        return type(value)(plain(v) for v in value)
    if isinstance(value, float) or (isinstance(value, int) and not isinstance(value, bool)):
        return float(value) if isinstance(value, float) else int(value)
    return value
