"""Load and validate params.yaml: the one place that knows its schema."""

from __future__ import annotations

import ast
import difflib
import math
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from neurodigits import NeuroDigitsError

PARAMS_FILE = "params.yaml"
PositiveInt = Annotated[int, Field(gt=0)]
# A parent model: models:/NAME/VERSION, models:/NAME@ALIAS, runs:/RUN_ID/PATH, or an export folder.
MODEL_URI = r"^models:/[^/@]+(/[0-9]+|@[A-Za-z][A-Za-z0-9_-]*)$|^runs:/[0-9a-f]+/.+$|^(?![A-Za-z][A-Za-z0-9+.-]*:/).+$"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


SourceName = Literal["mnist-5k", "mnist", "idx", "numpy", "images", "emnist", "lines", "synthetic-lines"]
LINE_SOURCES = ("lines", "synthetic-lines")  # text lines with transcriptions: read by a line model (crnn)


class SourceParams(_Section):
    """One entry of a `data.source` list given as a mapping: its own values of the per-source keys."""

    source: SourceName
    path: str | None = None
    emnist_split: str | None = None
    pixel_order: Literal["F", "C"] | None = None
    limit: int | None = Field(None, gt=0)


class DataParams(_Section):
    source: SourceName | list[SourceName | SourceParams] = Field("mnist-5k", min_length=1)
    path: str | None = None
    emnist_split: str = Field("letters", min_length=1)
    case: Literal["sensitive", "merge"] = "sensitive"
    image_size: int = Field(20, ge=8, le=64)
    test_fraction: float = Field(0.2, gt=0, lt=1)
    seed: int = 42
    limit: int | None = Field(None, gt=0)
    pixel_order: Literal["F", "C"] = "F"
    cache_dir: str = "~/.cache/neurodigits"
    line_height: int = Field(32, ge=16, le=128)
    line_max_width: int = Field(1024, ge=64, le=8192)
    synthetic_lines: int = Field(3000, ge=10)
    preprocess: bool = False

    @model_validator(mode="after")
    def _one_task(self) -> DataParams:
        kinds = {source.source in LINE_SOURCES for source in self.sources()}
        if len(kinds) > 1:
            raise ValueError("data.source mixes text lines (lines, synthetic-lines) with single characters; "
                             "a model reads one or the other: train them separately")
        if self.preprocess and self.task == "lines":
            raise ValueError("data.preprocess is for single characters; text lines are always normalised "
                             "(preprocess.line_image): set it to false")
        for entry in self.source if isinstance(self.source, list) else []:
            if not isinstance(entry, str) and entry.path is not None and not _inside(entry.path, self.path):
                raise ValueError(f"data.source entry {entry.source}: path {entry.path!r} is outside data.path "
                                 f"{self.path!r}, the folder dvc.yaml tracks; put its data in a folder under "
                                 "data.path and name that")
        return self

    @property
    def task(self) -> Literal["characters", "lines"]:
        """What the data holds: single characters (a classifier) or text lines (a line model)."""
        return "lines" if self.sources()[0].source in LINE_SOURCES else "characters"

    def sources(self) -> list[DataParams]:
        """One DataParams per source: the shared keys, overridden by a list entry's own mapping."""
        entries = self.source if isinstance(self.source, list) else [self.source]
        return [self.model_copy(update={"source": entry} if isinstance(entry, str) else
                                {k: v for k, v in entry.model_dump().items() if v is not None})
                for entry in entries]


def _inside(path: str, folder: str | None) -> bool:
    """Whether a path from params lies in `folder` (another path from params), as stages resolve them."""
    return folder is not None and resolve_path(path).resolve().is_relative_to(resolve_path(folder).resolve())


class ModelParams(_Section):
    kind: Literal["mlp", "cnn", "crnn"] = "mlp"
    hidden_units: list[PositiveInt] = Field(default=[25, 15], min_length=1)
    activation: Literal["relu", "gelu", "tanh", "sigmoid", "elu", "selu", "swish"] = "relu"
    conv_filters: list[PositiveInt] = Field(default=[32, 64], min_length=1)
    kernel_size: int = Field(3, ge=1, le=7)
    convs_per_block: int = Field(2, ge=1, le=4)
    batch_norm: Literal[False, True, "pooled"] = False
    dense_units: int = Field(128, gt=0)
    dropout: float = Field(0.4, ge=0, lt=1)
    rnn_units: int = Field(128, gt=0)
    rnn_layers: int = Field(2, ge=1, le=4)
    downsample: Literal[2, 4] = 4
    steps_per_column: Literal[1, 2] = 1

    @model_validator(mode="after")
    def _steps(self) -> ModelParams:
        if self.kind == "crnn" and 2 ** len(self.conv_filters) < self.downsample:
            raise ValueError(f"model.downsample {self.downsample} needs {self.downsample.bit_length() - 1} conv blocks "
                             f"to halve the width; give model.conv_filters that many entries or lower model.downsample")
        return self


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
    class_weight: Literal["none", "balanced"] = "none"
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    init_from: str | None = None
    freeze: Literal["none", "conv", "all-but-head"] = "none"
    fine_tune_epochs: int = Field(0, ge=0)
    fine_tune_learning_rate: float | None = Field(None, gt=0)

    @field_validator("init_from")
    @classmethod
    def _parent(cls, value: str | None) -> str | None:
        if value is not None and not re.match(MODEL_URI, value):
            raise ValueError(f"train.init_from {value!r} is not a parent model; give models:/NAME/VERSION, "
                             "models:/NAME@ALIAS, runs:/RUN_ID/model or an export folder")
        return value

    @model_validator(mode="after")
    def _transfer(self) -> TrainParams:
        if self.init_from is None and (self.freeze != "none" or self.fine_tune_epochs):
            raise ValueError("train.freeze and train.fine_tune_epochs need a parent model; "
                             "set train.init_from (e.g. models:/neurodigits@champion)")
        if self.fine_tune_epochs and self.freeze == "none":
            raise ValueError("train.fine_tune_epochs unfreezes a frozen parent; set train.freeze to conv or "
                             "all-but-head, or add the epochs to train.epochs")
        return self

    @property
    def fine_tune_lr(self) -> float:
        """The fine-tune phase's learning rate: train.fine_tune_learning_rate, else a tenth of train.learning_rate."""
        return self.fine_tune_learning_rate or self.learning_rate / 10


class EvaluateParams(_Section):
    gallery_size: int = Field(64, ge=1, le=400)


class DecodeParams(_Section):
    beam_width: int = Field(1, ge=1, le=256)
    lm_order: int = Field(12, ge=0, le=16)
    lm_weight: float = Field(1.0, ge=0)
    insertion_bonus: float = 2.0


class ExportParams(_Section):
    logits_tolerance: float = Field(1e-4, gt=0)


class TrackingParams(_Section):
    experiment: str = Field("neurodigits", min_length=1)
    registered_model: str = Field("neurodigits", min_length=1)
    alias: str = Field("champion", pattern=r"^[A-Za-z][A-Za-z0-9_-]*$")


_UNION_MODELS = {"SourceParams"}  # pydantic names union branches in error locations


class TuneParams(_Section):
    space: dict[str, str] = {}  # 'section.key' -> distribution, e.g. loguniform(1e-4, 1e-2); checked by check_space
    trials: int = Field(8, gt=0)
    metric: Literal["val_accuracy", "val_loss"] = "val_accuracy"
    mode: Literal["max", "min"] = "max"
    seed: int = 42
    validation_fraction: float = Field(0.2, gt=0, lt=1)
    max_failures: int = Field(1, ge=0)
    grace_period: int = Field(2, gt=0)
    reduction_factor: int = Field(2, ge=2)
    cpus_per_trial: int = Field(1, gt=0)


class Params(_Section):
    data: DataParams = DataParams()
    model: ModelParams = ModelParams()
    train: TrainParams = TrainParams()
    evaluate: EvaluateParams = EvaluateParams()
    decode: DecodeParams = DecodeParams()
    export: ExportParams = ExportParams()
    tracking: TrackingParams = TrackingParams()
    tune: TuneParams = TuneParams()

    @model_validator(mode="after")
    def _model_fits_data(self) -> Params:
        if (self.data.task == "lines") != (self.model.kind == "crnn"):
            raise ValueError(
                f"model.kind {self.model.kind} does not read {self.data.task}: "
                + ("text lines need model.kind crnn" if self.data.task == "lines" else
                   "crnn reads text lines; set data.source to lines or synthetic-lines (or model.kind to mlp/cnn)"))
        if self.train.class_weight != "none" and self.model.kind == "crnn":
            raise ValueError("train.class_weight weighs single characters; a line model (crnn) reads whole lines: "
                             "set it to none")
        if self.train.label_smoothing and self.model.kind == "crnn":
            raise ValueError("train.label_smoothing softens single characters' targets; a line model (crnn) is "
                             "trained on the CTC loss: set it to 0")
        return self

    def flat(self) -> dict[str, Any]:
        """Every param as 'section.key' -> value, the way MLflow and DVC show them."""
        return {
            f"{section}.{key}": value
            for section, values in self.model_dump().items()
            for key, value in values.items()
        }


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [model for arg in get_args(annotation) for model in _models_in(arg)]


def _fields_at(loc: tuple) -> list[str]:
    model: type[BaseModel] = Params
    for part in loc[:-1]:
        if isinstance(part, int):  # an entry of a list, e.g. of data.source
            continue
        field = model.model_fields.get(str(part))
        models = _models_in(field.annotation) if field else []
        if not models:
            return []
        model = models[0]
    return list(model.model_fields)


def _first_error(errors: list[dict]) -> dict:
    """The most telling of pydantic's errors: union tags dropped from locations, the deepest real mismatch
    (not "should be a list/mapping" from the union's other branch)."""
    cleaned = [{**error, "loc": tuple(part for part in error["loc"]
                                      if not (isinstance(part, str) and ("[" in part or part in _UNION_MODELS)))}
               for error in errors]
    return max(cleaned, key=lambda e: (e["type"] not in ("list_type", "model_type", "dict_type"), len(e["loc"])))


def _describe(error: dict, source: str) -> str:
    key = ".".join(str(part) for part in error["loc"])
    if error["type"] == "extra_forbidden":
        close = difflib.get_close_matches(str(error["loc"][-1]), _fields_at(error["loc"]), n=1)
        prefix = ".".join(str(part) for part in error["loc"][:-1])
        hint = f"did you mean '{prefix + '.' if prefix else ''}{close[0]}'?" if close else (
            f"allowed keys: {', '.join(_fields_at(error['loc']))}")
        return f"{source}: unknown key '{key}'; {hint}"
    if error["type"] == "value_error":
        return f"{source}: {error['ctx']['error']}"
    return f"{source}: '{key}' {error['msg'].lower()} (got {error['input']!r}); fix it in {source}"


DISTRIBUTIONS = {"loguniform": "loguniform(1e-4, 1e-2)", "uniform": "uniform(0.1, 0.5)",
                 "int": "int(1, 4)", "choice": "choice([32, 64])"}
SEARCHABLE = ("model", "train")  # trials train on the prepared data: data.* is fixed for a sweep
_DISTRIBUTION = re.compile(r"^\s*([a-z]+)\s*\((.*)\)\s*$", re.DOTALL)


def parse_distribution(text: str) -> tuple[str, list]:
    """'loguniform(1e-4, 1e-2)' -> ('loguniform', [0.0001, 0.01]); literals only (ast.literal_eval), no eval.
    Raises ValueError with the fix."""
    match = _DISTRIBUTION.match(str(text))
    if not match or match[1] not in DISTRIBUTIONS:
        raise ValueError(f"write one of {', '.join(DISTRIBUTIONS.values())}")
    kind, example = match[1], DISTRIBUTIONS[match[1]]
    try:
        args = list(ast.literal_eval(f"({match[2]},)")) if match[2].strip() else []
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        raise ValueError(f"its arguments must be numbers or lists, e.g. {example}") from None
    if kind == "choice":
        if len(args) != 1 or not isinstance(args[0], list) or not args[0]:
            raise ValueError(f"choice takes one non-empty list, e.g. {example}")
        return kind, args[0]
    numeric = (int,) if kind == "int" else (int, float)
    if len(args) != 2 or not all(isinstance(a, numeric) and not isinstance(a, bool) for a in args):
        raise ValueError(f"{kind} takes two {'integers' if kind == 'int' else 'numbers'} (low, high), "
                         f"e.g. {example}")
    if not args[0] < args[1] or (kind == "loguniform" and args[0] <= 0):
        raise ValueError(f"{kind} needs {'0 < ' if kind == 'loguniform' else ''}low < high, e.g. {example}")
    return kind, args


def _probe_values(kind: str, args: list) -> list:
    """Values a distribution can produce that the schema must accept: the bounds, an interior non-integer
    for float ranges (so an integer key rejects uniform), every option of a choice."""
    if kind in ("choice", "int"):
        return args
    return [*args, args[0] + (args[1] - args[0]) / math.pi]


def check_space(params: Params, source: str = PARAMS_FILE) -> None:
    """Every tune.space entry names a searchable params key and a distribution whose values that key accepts."""
    searchable = [f"{section}.{key}" for section in SEARCHABLE for key in type(getattr(params, section)).model_fields]
    for key, text in params.tune.space.items():
        where = f"{source}: 'tune.space.{key}'"
        section, _, name = key.partition(".")
        if key not in searchable:
            if section in Params.model_fields and name in type(getattr(params, section)).model_fields:
                raise NeuroDigitsError(f"{where}: only {' and '.join(s + '.*' for s in SEARCHABLE)} keys can be "
                                       "searched (trials train on the prepared data); remove it")
            close = difflib.get_close_matches(key, searchable, n=1)
            raise NeuroDigitsError(f"{where}: unknown params key; " + (
                f"did you mean '{close[0]}'?" if close else "use a model.* or train.* key"))
        if key in ("train.epochs", "train.validation_fraction"):
            raise NeuroDigitsError(f"{where}: cannot be searched (ASHA runs each trial up to train.epochs, on the "
                                   "tune.validation_fraction split); set it directly and remove it from tune.space")
        try:
            kind, args = parse_distribution(text)
        except ValueError as exc:
            raise NeuroDigitsError(f"{where}: bad distribution {text!r}; {exc}") from None
        current = getattr(params, section)
        for value in _probe_values(kind, args):
            try:
                current.model_validate({**current.model_dump(), name: value})
            except ValidationError as exc:
                error = exc.errors()[0]
                fix = "use int(low, high) for this integer key" if error["type"] == "int_from_float" else "fix it"
                shown = f"{value:.4g}" if isinstance(value, float) else repr(value)
                raise NeuroDigitsError(f"{where}: {text} can give {shown}, but {key}: {error['msg'].lower()}; "
                                       f"{fix}") from None
    if (params.tune.metric == "val_loss") != (params.tune.mode == "min"):
        raise NeuroDigitsError(f"{source}: 'tune.mode' {params.tune.mode} does not fit tune.metric "
                               f"{params.tune.metric}; use mode {'min' if params.tune.mode == 'max' else 'max'}")


SWEEP_LINES = ("sweeps tune character models (scored by val_accuracy or val_loss), not line models; "
               "compare line models by CER with `dvc exp run --queue -S ...` and `dvc exp show`")


def check_sweepable(params: Params) -> None:
    """Sweeps tune character models: a line model (model.kind crnn) is refused in one line."""
    if params.model.kind == "crnn":
        raise NeuroDigitsError(SWEEP_LINES)


def parse_params(raw: Any, source: str = PARAMS_FILE) -> Params:
    """Validate a params mapping; raise NeuroDigitsError with one line naming the key and the fix."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise NeuroDigitsError(f"{source}: expected a mapping of sections (data, model, train, ...), "
                               f"got {type(raw).__name__}")
    try:
        params = Params.model_validate(raw)
    except ValidationError as exc:
        raise NeuroDigitsError(_describe(_first_error(exc.errors()), source)) from None
    check_space(params, source)
    return params


def project_root() -> Path:
    """The main repo: DVC sets DVC_ROOT in every stage, also for `dvc exp run --queue/--temp` copies."""
    return Path(os.environ.get("DVC_ROOT") or os.getcwd()).resolve()


def resolve_path(path: str) -> Path:
    """A path from params.yaml: `~` expanded, relative paths taken from the project root (DVC_ROOT), so
    they resolve the same in `dvc exp run --temp/--queue` copies."""
    path, root = Path(path).expanduser(), project_root()
    return path if path.is_absolute() or root == Path.cwd().resolve() else root / path  # short paths in messages


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
