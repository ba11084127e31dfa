"""The tuner's search space: the parameters each model searches, their ranges, their reasons.

Search space (``--model`` decides which parameters are searched: each model gets only
the ``ModelConfig`` fields it reads, see :data:`MODEL_PARAMS` (``lr``, the linear model,
only the training parameters, ``embedding_l2``, ``embedding_stddev`` and ``id_dropout``); the rest keep
the base config's values):

========================  =================================  ==========================
parameter                 range                              why
========================  =================================  ==========================
learning_rate             log-uniform [1e-4, 1e-2]           the paper uses 1e-3
                                                             (Ele.me) and 1e-4
                                                             (Bundle); Adam on sparse
                                                             embeddings rarely trains
                                                             above 1e-2; its effect is
                                                             multiplicative, hence log
batch_size                {256, 512, 1024, 2048, 4096}       4096 is the paper's, for
                                                             1.2M rows; small data gets
                                                             few updates per epoch at
                                                             that size
dropout                   uniform [0, 0.5]                   the paper uses 0.1; above
                                                             0.5 the narrow attention
                                                             inputs lose too much
embedding_l2              0, or log-uniform [1e-6, 1e-1]     the paper's lambda is 0.1
                                                             but small data trains best
                                                             with none: the amount spans
                                                             decades and "none" is a
                                                             real option a log scale
                                                             cannot reach, so it is a
                                                             separate on/off choice
embedding_stddev          log-uniform [1e-4, 1]              the paper initialises at
                                                             1e-4; small data needs
                                                             rows large enough for
                                                             attention to tell entries
                                                             apart from the start (the
                                                             recipe: 0.05)
embedding_dim             {8, 16, 32}                        the paper's d is 16 (its
                                                             Table 11 sweeps d); wider
                                                             tables overfit ids with
                                                             few rows and cost time
mlp_units                 [1024, 512, 256], [256, 128, 64],  the paper's tower, the
                          [128, 64], [64]                    synthetic preset's, and
                                                             narrower ones for small data
pooling_hidden            {16, 32, 64, 128}                  d_h: the paper uses 128
                                                             (Ele.me) and 32 (Bundle)
input_interaction_layers  {1, 2, 3}                          the paper's M is 2; 0 is
                                                             the "w/o Int" ablation, not
                                                             a setting to tune
history_match, wide,      {True, False}                      FESeq's inputs beyond the
target_in_output                                             paper (off in the recipe):
                                                             whether a dataset rewards
                                                             them is an empirical matter
redraw_embeddings         {True, False}                      re-draw the id embeddings
                                                             every epoch (on in the
                                                             recipe): it turns the
                                                             first-epoch peak into a
                                                             climb where ids are
                                                             memorised, and may cost
                                                             where they are not
id_dropout                {0, 0.1, 0.2, 0.3, "auto"}        train on OOV user and
                                                             context ids: 0 (the paper)
                                                             where every user is known,
                                                             more where a split by time
                                                             puts new users in valid and
                                                             test; "auto" trains each
                                                             field's OOV id on >= 10 %
                                                             of the samples
========================  =================================  ==========================

``--space FILE`` (JSON) replaces ranges: ``{"learning_rate": {"low": 3e-4, "high": 3e-3,
"log": true}, "batch_size": [512, 1024], "embedding_l2": {"low": 1e-5, "high": 1e-2,
"log": true, "zero": true}, "mlp_units": [[256, 128]], "embedding_dim": null}``: a
mapping ``{"low", "high"[, "log"][, "zero"]}`` is a float range (``zero``: 0 is a
choice too), a list is a set of choices, ``null`` leaves the parameter out of the
search (the base config's value is used).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import optuna

from feseq_tf import train
from feseq_tf.config import ExperimentConfig


@dataclasses.dataclass(frozen=True)
class FloatRange:
    """A float parameter: uniform (or log-uniform) in [low, high]; ``zero`` adds 0."""

    low: float
    high: float
    log: bool = False
    zero: bool = False

    def __post_init__(self) -> None:
        if not self.low <= self.high:
            raise ValueError(f"low must be <= high, got low={self.low!r}, high={self.high!r}.")
        if self.log and not self.low > 0:
            raise ValueError(f"a log range needs low > 0, got low={self.low!r}.")

    def widened(self, value: float) -> FloatRange:
        """The range, widened so that ``value`` lies in it (0 as the zero choice)."""
        if value == 0 and (self.log or self.low > 0):
            return dataclasses.replace(self, zero=True)
        return dataclasses.replace(self, low=min(self.low, value), high=max(self.high, value))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class Choices:
    """A categorical parameter: one of ``values``."""

    values: tuple

    def __post_init__(self) -> None:
        if not self.values:
            raise ValueError("a list of choices must not be empty.")

    def widened(self, value: Any) -> Choices:
        return self if value in self.values else Choices((*self.values, value))

    def to_dict(self) -> dict[str, Any]:
        return {"choices": [list(v) if isinstance(v, tuple) else v for v in self.values]}


#: The default search space (see the module docstring for the reasons of each range).
SEARCH_SPACE: dict[str, FloatRange | Choices] = {
    "learning_rate": FloatRange(1e-4, 1e-2, log=True),
    "batch_size": Choices((256, 512, 1024, 2048, 4096)),
    "dropout": FloatRange(0.0, 0.5),
    "embedding_l2": FloatRange(1e-6, 1e-1, log=True, zero=True),
    "embedding_stddev": FloatRange(1e-4, 1.0, log=True),
    "embedding_dim": Choices((8, 16, 32)),
    "mlp_units": Choices(((1024, 512, 256), (256, 128, 64), (128, 64), (64,))),
    "pooling_hidden": Choices((16, 32, 64, 128)),
    "input_interaction_layers": Choices((1, 2, 3)),
    "history_match": Choices((True, False)),
    "wide": Choices((True, False)),
    "target_in_output": Choices((True, False)),
    "redraw_embeddings": Choices((True, False)),
    "id_dropout": Choices((0.0, 0.1, 0.2, 0.3, "auto")),
}
TRAIN_PARAMS = ("learning_rate", "batch_size")
#: ``TrainConfig`` fields of the space (the rest are ``ModelConfig`` fields).
_TRAIN_FIELDS = (*TRAIN_PARAMS, "redraw_embeddings")
_SHARED = (
    *TRAIN_PARAMS,
    "redraw_embeddings",
    "dropout",
    "embedding_l2",
    "embedding_stddev",
    "embedding_dim",
    "mlp_units",
    "id_dropout",
)
#: The parameters searched for each model: those it reads (``feseq_tf.models.baselines``
#: lists the fields each baseline reads). A model not listed gets ``TRAIN_PARAMS`` only.
MODEL_PARAMS: dict[str, tuple[str, ...]] = {
    "feseq": (
        *_SHARED, "pooling_hidden", "input_interaction_layers", "history_match", "wide",
        "target_in_output",
    ),
    "feseq_paper": (*_SHARED, "pooling_hidden", "input_interaction_layers"),
    "deepfm": (*_SHARED, "wide"),
    "autoint": (*_SHARED, "input_interaction_layers", "wide"),
    "dcnv2": (*_SHARED, "input_interaction_layers", "wide"),
    "din": (*_SHARED, "pooling_hidden", "history_match", "wide"),
    "bst": (*_SHARED, "history_match", "wide"),
    "dmr": (*_SHARED, "pooling_hidden", "history_match", "wide"),
    "lr": (*TRAIN_PARAMS, "embedding_l2", "embedding_stddev", "id_dropout"),
}


def _section(param: str) -> str:
    return "train" if param in _TRAIN_FIELDS else "model"


def _parse_spec(name: str, value: Any) -> FloatRange | Choices | None:
    if value is None:
        return None
    if isinstance(value, list):
        return Choices(tuple(tuple(v) if isinstance(v, list) else v for v in value))
    if isinstance(value, dict):
        unknown = sorted(set(value) - {"low", "high", "log", "zero"})
        if unknown or not {"low", "high"} <= set(value):
            raise ValueError(
                f"a range holds 'low', 'high' and optionally 'log', 'zero', got {sorted(value)}."
            )
        return FloatRange(
            float(value["low"]),
            float(value["high"]),
            bool(value.get("log", False)),
            bool(value.get("zero", False)),
        )
    raise ValueError(
        f"expected a list of choices, a {{'low', 'high'}} range or null, got {value!r}."
    )


def parse_space(overrides: dict[str, Any] | None) -> dict[str, FloatRange | Choices]:
    """:data:`SEARCH_SPACE` with the ranges of ``overrides`` (the ``--space`` format).

    Raises:
        ValueError: an unknown parameter or a malformed range (the message names it).
    """
    overrides = overrides or {}
    if not isinstance(overrides, dict):
        raise ValueError(f"space must be a mapping of parameter -> range, got {overrides!r}.")
    unknown = sorted(set(overrides) - set(SEARCH_SPACE))
    if unknown:
        raise ValueError(f"unknown parameters in space: {unknown}; known: {sorted(SEARCH_SPACE)}.")
    space: dict[str, FloatRange | Choices] = {}
    for name, default in SEARCH_SPACE.items():
        try:
            spec = _parse_spec(name, overrides[name]) if name in overrides else default
        except ValueError as err:
            raise ValueError(f"space[{name!r}]: {err}") from None
        if spec is not None:
            if name in (
                "batch_size",
                "embedding_dim",
                "pooling_hidden",
                "input_interaction_layers",
                "mlp_units",
                "history_match",
                "wide",
                "target_in_output",
                "redraw_embeddings",
            ) and not isinstance(spec, Choices):
                raise ValueError(
                    f"space[{name!r}]: expected a list of choices, got {overrides[name]!r}."
                )
            space[name] = spec
    return space


def model_space(
    model_name: str, base_config: ExperimentConfig, space: dict[str, FloatRange | Choices]
) -> dict[str, FloatRange | Choices]:
    """The parameters searched for ``model_name``, each widened to hold the base value."""
    wanted = MODEL_PARAMS.get(model_name, TRAIN_PARAMS)
    out: dict[str, FloatRange | Choices] = {}
    for name in wanted:
        if name in space:
            out[name] = space[name].widened(_base_value(base_config, name))
    return out


def check_values(base_config: ExperimentConfig, space: dict[str, FloatRange | Choices]) -> None:
    """Every choice and range end is a valid config value (else a one-line error now,
    not a failed trial later)."""
    for name, spec in space.items():
        values = spec.values if isinstance(spec, Choices) else (spec.low, spec.high)
        for value in values:
            value = list(value) if isinstance(value, tuple) else value
            try:
                base_config.override({_section(name): {name: value}})
            except (TypeError, ValueError) as err:
                raise train.UsageError(f"invalid search space: {name}={value!r}: {err}") from None


def _base_value(config: ExperimentConfig, name: str) -> Any:
    value = getattr(getattr(config, _section(name)), name)
    return tuple(value) if isinstance(value, list) else value


def _encode(value: Any) -> Any:
    """A choice as Optuna stores it (tuples of units as ``"256-128-64"``)."""
    return "-".join(str(v) for v in value) if isinstance(value, tuple) else value


def _decode(value: Any) -> Any:
    if isinstance(value, str) and value[:1].isdigit():  # "256-128-64"; "auto" stays a word
        return [int(v) for v in value.split("-")]
    return value


def suggest(
    trial: optuna.Trial, space: dict[str, FloatRange | Choices]
) -> dict[str, dict[str, Any]]:
    """One configuration from the space, as ``{"model": {...}, "train": {...}}`` overrides."""
    overrides: dict[str, dict[str, Any]] = {"model": {}, "train": {}}
    for name, spec in space.items():
        if isinstance(spec, Choices):
            value = _decode(trial.suggest_categorical(name, [_encode(v) for v in spec.values]))
        elif spec.zero and not trial.suggest_categorical(f"{name}_on", [True, False]):
            value = 0.0
        else:
            value = trial.suggest_float(name, spec.low, spec.high, log=spec.log)
        overrides[_section(name)][name] = value
    return overrides


def default_params(
    base_config: ExperimentConfig, space: dict[str, FloatRange | Choices]
) -> dict[str, Any]:
    """The Optuna parameters that :func:`suggest` turns into the base configuration."""
    params: dict[str, Any] = {}
    for name, spec in space.items():
        value = _base_value(base_config, name)
        if isinstance(spec, FloatRange) and spec.zero:
            params[f"{name}_on"] = value != 0
            if value == 0:
                continue
        params[name] = _encode(value)
    return params
