"""Load and validate params.yaml: the one place that knows its schema."""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from neurodigits import NeuroDigitsError

PARAMS_FILE = "params.yaml"
PositiveInt = Annotated[int, Field(gt=0)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataParams(_Section):
    source: Literal["mnist-5k", "mnist", "idx", "numpy", "images"] = "mnist-5k"
    path: str | None = None
    image_size: int = Field(20, ge=8, le=64)
    test_fraction: float = Field(0.2, gt=0, lt=1)
    seed: int = 42
    limit: int | None = Field(None, gt=0)
    pixel_order: Literal["F", "C"] = "F"
    cache_dir: str = "~/.cache/neurodigits"


class ModelParams(_Section):
    kind: Literal["mlp", "cnn"] = "mlp"
    hidden_units: list[PositiveInt] = Field(default=[25, 15], min_length=1)
    activation: Literal["relu", "gelu", "tanh", "sigmoid", "elu", "selu", "swish"] = "relu"
    conv_filters: list[PositiveInt] = Field(default=[32, 64], min_length=1)
    kernel_size: int = Field(3, ge=1, le=7)
    convs_per_block: int = Field(2, ge=1, le=4)
    batch_norm: bool = False
    dense_units: int = Field(128, gt=0)
    dropout: float = Field(0.4, ge=0, lt=1)


class TrainParams(_Section):
    epochs: int = Field(40, gt=0)
    batch_size: int = Field(32, gt=0)
    learning_rate: float = Field(0.001, gt=0)
    lr_schedule: Literal["constant", "cosine", "exponential"] = "constant"
    seed: int = 42
    validation_fraction: float = Field(0.0, ge=0, lt=1)
    early_stopping_patience: int = Field(0, ge=0)
    augment: bool = False
    augment_rotation: float = Field(0.04, ge=0, le=0.5)
    augment_shift: float = Field(0.08, ge=0, le=0.5)
    augment_zoom: float = Field(0.08, ge=0, le=0.5)
    augment_elastic: float = Field(0.025, ge=0, le=0.2)
    augment_stroke: float = Field(0.0, ge=0, le=1)
    augment_blur: float = Field(0.0, ge=0, le=3)
    augment_contrast: float = Field(0.0, ge=0, lt=1)
    augment_resolution: float = Field(0.0, ge=0, le=3)
    steps_per_execution: int = Field(32, gt=0)


class EvaluateParams(_Section):
    gallery_size: int = Field(64, ge=1, le=400)


class ExportParams(_Section):
    logits_tolerance: float = Field(1e-4, gt=0)


class TrackingParams(_Section):
    experiment: str = Field("neurodigits", min_length=1)
    registered_model: str = Field("neurodigits", min_length=1)
    alias: str = Field("champion", pattern=r"^[A-Za-z][A-Za-z0-9_-]*$")


class Params(_Section):
    data: DataParams = DataParams()
    model: ModelParams = ModelParams()
    train: TrainParams = TrainParams()
    evaluate: EvaluateParams = EvaluateParams()
    export: ExportParams = ExportParams()
    tracking: TrackingParams = TrackingParams()

    def flat(self) -> dict[str, Any]:
        """Every param as 'section.key' -> value, the way MLflow and DVC show them."""
        return {
            f"{section}.{key}": value
            for section, values in self.model_dump().items()
            for key, value in values.items()
        }


def _fields_at(loc: tuple) -> list[str]:
    model: type[BaseModel] = Params
    for part in loc[:-1]:
        field = model.model_fields.get(str(part))
        if field is None or not isinstance(field.annotation, type) or not issubclass(field.annotation, BaseModel):
            return []
        model = field.annotation
    return list(model.model_fields)


def _describe(error: dict, source: str) -> str:
    key = ".".join(str(part) for part in error["loc"])
    if error["type"] == "extra_forbidden":
        close = difflib.get_close_matches(str(error["loc"][-1]), _fields_at(error["loc"]), n=1)
        prefix = ".".join(str(part) for part in error["loc"][:-1])
        hint = f"did you mean '{prefix + '.' if prefix else ''}{close[0]}'?" if close else (
            f"allowed keys: {', '.join(_fields_at(error['loc']))}")
        return f"{source}: unknown key '{key}'; {hint}"
    return f"{source}: '{key}' {error['msg'].lower()} (got {error['input']!r}); fix it in {source}"


def parse_params(raw: Any, source: str = PARAMS_FILE) -> Params:
    """Validate a params mapping; raise NeuroDigitsError with one line naming the key and the fix."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise NeuroDigitsError(f"{source}: expected a mapping of sections (data, model, train, ...), "
                               f"got {type(raw).__name__}")
    try:
        return Params.model_validate(raw)
    except ValidationError as exc:
        raise NeuroDigitsError(_describe(exc.errors()[0], source)) from None


def project_root() -> Path:
    """The main repo: DVC sets DVC_ROOT in every stage, also for `dvc exp run --queue/--temp` copies."""
    return Path(os.environ.get("DVC_ROOT") or os.getcwd()).resolve()


def resolve_path(path: str) -> Path:
    """A path from params.yaml: `~` expanded, relative paths taken from the project root (DVC_ROOT), so
    they resolve the same in `dvc exp run --temp/--queue` copies."""
    return project_root() / Path(path).expanduser()


def load_params(path: str | Path = PARAMS_FILE) -> Params:
    """Read and validate params.yaml."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise NeuroDigitsError(f"{path}: not found; run from the project root or pass the params file") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise NeuroDigitsError(f"{path}: invalid YAML{where}; fix the syntax") from None
    return parse_params(raw, str(path))
