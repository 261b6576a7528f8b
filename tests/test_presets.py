"""presets.yaml: every preset valid, the README table generated from it, and paths resolved from DVC_ROOT."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import ROOT
from data_helpers import per_class, write_pngs

from neurodigits import NeuroDigitsError
from neurodigits.data import load_dataset
from neurodigits.params import DataParams
from neurodigits.presets import load_presets, readme_table


def test_every_preset_is_valid_and_the_readme_table_comes_from_presets_yaml():
    presets = load_presets()
    assert "cnn" in presets and presets["cnn"].apply().model.kind == "cnn"
    assert readme_table(presets) in (ROOT / "README.md").read_text(), "run: python -m neurodigits.presets"


def test_a_preset_command_is_what_dvc_exp_run_takes():
    [cnn] = [p for name, p in load_presets().items() if name == "cnn"]
    assert cnn.command() == ("dvc exp run -S model.kind=cnn -S train.augment=true -S train.augment_stroke=0.3 "
                             "-S train.augment_resolution=0.5 -S train.augment_blur=0.5 -S train.augment_contrast=0.2")


def test_a_bad_preset_is_one_line(tmp_path: Path):
    path = tmp_path / "presets.yaml"
    path.write_text(yaml.safe_dump({"typo": {"params": {"train": {"epocs": 3}}}}))
    with pytest.raises(NeuroDigitsError, match="unknown key 'train.epocs'; did you mean 'train.epochs'"):
        load_presets(path)


def test_relative_data_path_resolves_against_dvc_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    write_pngs(tmp_path / "digits", *per_class(2))
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    monkeypatch.chdir(ROOT)  # elsewhere, as in a `dvc exp run --temp` copy
    dataset = load_dataset(DataParams(source="images", path="digits"))
    assert sorted(np.unique(dataset.labels)) == list(range(10))
