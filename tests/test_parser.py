"""Each subcommand's --help: the options it uses first, with their meaning; `--help all`: every option."""

from __future__ import annotations

import re

import pytest

from mnist_lightning.cli import MNISTCLI

SUBCOMMANDS = ["fit", "validate", "test", "predict", "report", "export", "serve"]


def help_of(*args: str, capsys: pytest.CaptureFixture[str]) -> list[str]:
    with pytest.raises(SystemExit) as exit_:
        MNISTCLI(args=list(args))
    assert exit_.value.code == 0
    return capsys.readouterr().out.splitlines()


@pytest.mark.parametrize("subcommand", SUBCOMMANDS)
def test_a_subcommands_help_is_its_own_options_first(subcommand, capsys):
    lines = help_of(subcommand, "--help", capsys=capsys)
    text = "\n".join(lines)
    assert len(lines) <= 90, len(lines)
    assert "--ckpt_path" in "\n".join(lines[:15])
    assert "registry" not in text and "DeepSpeed" not in text and "--trainer.plugins" not in text
    assert f"{subcommand} --help all" in " ".join(" ".join(lines[-3:]).split())
    first_trainer = next((i for i, line in enumerate(lines) if line.startswith("  --trainer.")), len(lines))
    own = [line for line in lines[:first_trainer] if line.startswith("  --")]
    assert own and all(not line.startswith("  --trainer.") for line in own)


def test_fit_help_lists_the_recipe_and_no_predict_options(capsys):
    text = "\n".join(help_of("fit", "--help", capsys=capsys)[:60])
    for option in ("--model.lr", "--model.dropout", "--data.batch_size", "--data.val_split", "--seed_everything"):
        assert option in text, option
    assert "--prediction_writer" not in text and "--data.predict_path" not in text


def test_predict_help_lists_its_pictures_and_table_not_training_knobs(capsys):
    text = "\n".join(help_of("predict", "--help", capsys=capsys))
    for option in ("--data.predict_path", "--prediction_writer.output", "--prediction_writer.threshold"):
        assert option in text, option
    assert "--model.lr" not in text and "--data.batch_size" not in text and "--trainer.max_epochs" not in text


def test_help_all_lists_every_option_and_the_seed_the_configs_use(capsys):
    lines = help_of("fit", "--help", "all", capsys=capsys)
    text = "\n".join(lines)
    assert len(lines) > 300 and "--trainer.deterministic" in text and "--prediction_writer.output" in text
    seed = text[text.index("\n  --seed_everything SEED") :].split("\n  --")[1]
    assert "default: 42" in " ".join(seed.split())


def test_help_takes_only_all(capsys):
    with pytest.raises(SystemExit) as exit_:
        MNISTCLI(args=["fit", "--help", "everything"])
    assert exit_.value.code == 2 and "--help takes nothing or `all`" in capsys.readouterr().err


def test_help_all_shows_each_settings_range(capsys):
    text = " ".join("\n".join(help_of("fit", "--help", "all", capsys=capsys)).split())
    for option, kind in (
        ("--model.lr", "PositiveFloat"),
        ("--model.dropout", "DropoutRate"),
        ("--data.batch_size", "PositiveInt"),
        ("--data.val_split", "OpenUnitInterval"),
    ):
        assert re.search(rf"{re.escape(option)} .*?\(type: {kind}", text), option


@pytest.mark.parametrize(
    ("option", "value", "limits"),
    [
        ("--data.batch_size", "0", "batch_size>0"),
        ("--model.dropout", "1", "dropout>=0 and dropout<1"),
        ("--data.val_split", "0", "val_split>0 and val_split<1"),
        ("--model.eps=-1e-7", "", "eps>0"),
    ],
)
def test_a_value_out_of_range_is_refused_with_its_range(option, value, limits, capsys):
    with pytest.raises(SystemExit) as exit_:
        MNISTCLI(args=["fit", option, value] if value else ["fit", option])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1
    assert f"{option.replace('=', ' ')} {value} is out of range: it must be {limits}".replace("  ", " ") in err
