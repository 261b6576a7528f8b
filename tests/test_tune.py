"""Sweeps: the tune section's validation (no Ray), and real sweeps on a real two-node Ray cluster on loopback."""

from __future__ import annotations

import sys

import pytest
import yaml
from conftest import ROOT

from neurodigits import NeuroDigitsError, cli
from neurodigits.params import parse_params

BAD_SPACES = {
    "unknown key": ({"train.learning_rat": "loguniform(1e-4, 1e-2)"},
                    "'tune.space.train.learning_rat': unknown params key; did you mean 'train.learning_rate'?"),
    "data key": ({"data.image_size": "int(16, 28)"}, "only model.* and train.* keys can be searched"),
    "epochs": ({"train.epochs": "int(5, 40)"}, "ASHA runs each trial up to train.epochs"),
    "unknown distribution": ({"model.dropout": "normal(0.2, 0.1)"}, "write one of loguniform(1e-4, 1e-2), "),
    "code, not a literal": ({"train.seed": "int(__import__('os').getpid(), 9)"}, "must be numbers or lists"),
    "loguniform from 0": ({"train.learning_rate": "loguniform(0, 1e-2)"}, "loguniform needs 0 < low < high"),
    "one bound": ({"model.dropout": "uniform(0.1)"}, "uniform takes two numbers (low, high)"),
    "float int bounds": ({"model.dense_units": "int(32, 64.5)"}, "int takes two integers"),
    "empty choice": ({"train.batch_size": "choice([])"}, "choice takes one non-empty list"),
    "out of range": ({"model.dropout": "uniform(0.2, 1.5)"}, "can give 1.5, but model.dropout: input should be less"),
    "uniform on an int": ({"train.batch_size": "uniform(16, 64)"}, "use int(low, high) for this integer key"),
    "bad option": ({"model.kind": "choice(['mlp', 'rnn'])"}, "can give 'rnn', but model.kind: input should be"),
    "not a string": ({"train.batch_size": [16, 32]}, "'tune.space.train.batch_size' input should be a valid string"),
}


@pytest.mark.parametrize("space, expected", BAD_SPACES.values(), ids=BAD_SPACES.keys())
def test_a_bad_search_space_entry_is_one_line(space, expected):
    with pytest.raises(NeuroDigitsError) as error:
        parse_params({"tune": {"space": space}})
    assert expected in str(error.value) and "\n" not in str(error.value), str(error.value)


def test_mode_must_fit_the_metric():
    with pytest.raises(NeuroDigitsError, match="'tune.mode' max does not fit tune.metric val_loss; use mode min"):
        parse_params({"tune": {"metric": "val_loss"}})


def test_the_cli_stops_on_a_bad_space_before_starting_ray(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"tune": {"space": {"model.dropout": "uniform(0.5, 0.1)"}}}))
    assert cli.main(["tune"]) == 1
    assert capsys.readouterr().err == ("error: params.yaml: 'tune.space.model.dropout': bad distribution "
                                       "'uniform(0.5, 0.1)'; uniform needs low < high, e.g. uniform(0.1, 0.5)\n")


def test_the_default_space_is_valid_and_every_distribution_parses():
    params = parse_params(yaml.safe_load((ROOT / "params.yaml").read_text()))
    assert params.tune.space and params.tune.trials > 0 and "ray" not in sys.modules
