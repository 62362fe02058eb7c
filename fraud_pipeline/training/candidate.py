"""A candidate: the main model, its fallback for unavailable history, and their thresholds."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace

import pandas as pd

from fraud_pipeline.features.spec import FeatureSpec, default_spec
from fraud_pipeline.lib.costs import CostModel, ThresholdChoice, choose_threshold
from fraud_pipeline.training.model import ModelParams, RowDigest, TrainedModel, score, train_model
from fraud_pipeline.training.windows import TrainingWindows


@dataclass(frozen=True)
class ThresholdedModel:
    """A trained model with the cost-minimising threshold chosen for it on validation."""

    model: TrainedModel
    threshold: float
    validation_cost: float
    validation_alerts: int
    #: The rows the threshold was chosen on.
    threshold_rows: RowDigest | None = None

    def as_dict(self) -> dict:
        """The model's plain values with its threshold (the shape the bundle and the scorer read)."""
        return {
            **self.model.as_dict(),
            "threshold": self.threshold,
            "validation_cost": self.validation_cost,
            "validation_alerts": self.validation_alerts,
            "threshold_rows": None if self.threshold_rows is None else asdict(self.threshold_rows),
        }

    def provenance(self) -> dict:
        """What the model learnt from, fitted, stopped on and was thresholded on, as plain digests."""
        digests = {
            "train_rows": self.model.train_rows,
            "fit_rows": self.model.fit_rows,
            "early_stopping_rows": self.model.early_stopping_rows,
            "threshold_rows": self.threshold_rows,
        }
        return {name: None if d is None else asdict(d) for name, d in digests.items()}


@dataclass(frozen=True)
class Candidate:
    """What ``fraud_model`` hands on: the main model and its fallback, each with its threshold.

    Attributes:
        main: The model on every feature.
        fallback: The model without history features, for rows whose history is unavailable.
        params: The LightGBM settings both were trained with.
        windows: The windows the candidate was trained and validated on (None outside a run).
        spec: The feature spec both were trained on, as :meth:`FeatureSpec.to_dict` gives it (serving
            and scoring compute exactly these features; ``FeatureSpec.from_dict`` reads it back).
    """

    main: ThresholdedModel
    fallback: ThresholdedModel
    params: dict = field(default_factory=dict)
    windows: TrainingWindows | None = None
    spec: dict | None = None

    def feature_spec(self) -> FeatureSpec:
        """The spec the candidate was trained on (the default spec for a candidate that did not record one)."""
        return FeatureSpec.from_dict(self.spec, "<candidate>") if self.spec else default_spec()

    @property
    def version(self) -> str:
        """The main model's content hash."""
        return self.main.model.version

    @property
    def threshold(self) -> float:
        """The main model's alert threshold."""
        return self.main.threshold

    def with_run(self, params: dict, windows: TrainingWindows) -> Candidate:
        """The same candidate, stamped with the run's settings and windows."""
        return replace(self, params=params, windows=windows)

    def as_dict(self) -> dict:
        """Plain values: the main model's fields at the top, the fallback nested (what the scorer reads)."""
        return {
            **self.main.as_dict(),
            "version": self.version,
            "fallback": self.fallback.as_dict(),
            "params": self.params,
            "windows": self.windows.as_dict() if self.windows else None,
            "feature_spec": self.spec,
        }

    def models(self) -> dict[str, ThresholdedModel]:
        """``main`` and ``fallback`` by name."""
        return {"main": self.main, "fallback": self.fallback}

    def provenance(self) -> dict:
        """Per model, the digests of the rows it learnt from, fitted, stopped on and was thresholded on."""
        return {name: model.provenance() for name, model in self.models().items()}

    def to_metadata(self) -> dict:
        """The candidate's identity, thresholds and sample for the Dagster UI."""
        return {
            "version": self.version,
            "best_iteration": self.main.model.best_iteration,
            "threshold": self.main.threshold,
            "validation_cost_at_threshold": self.main.validation_cost,
            "validation_alerts": self.main.validation_alerts,
            "fallback_threshold": self.fallback.threshold,
            "fallback_validation_alerts": self.fallback.validation_alerts,
            "genuine_sample_rate": self.main.model.genuine_sample_rate,
            "feature_spec_digest": self.feature_spec().digest(),
        }


def history_count(spec: FeatureSpec | None = None) -> str:
    """The count that says a row has history: the longest-window count on the spec's first key.

    On the default spec that is ``n_prior_tx_30d`` (the user's transactions over 30 days).

    Raises:
        ValueError: If the spec declares no count at all.
    """
    spec = spec or default_spec()
    counts = [f for f in spec.aggregates if f.agg == "count"]
    if not counts:
        raise ValueError(f"{spec.source}: the feature spec declares no count, so no row can be told to have history")
    first_key = counts[0].key
    return max((f for f in counts if f.key == first_key), key=lambda f: f.window_us).name


def fallback_rows(frame: pd.DataFrame, spec: FeatureSpec | None = None) -> pd.DataFrame:
    """The rows the fallback learns from and is thresholded on: rows with history, whom an outage would hide it from."""
    return frame[frame[history_count(spec)] > 0]


def model_rows(spec: FeatureSpec | None = None) -> dict[str, Callable[[pd.DataFrame], pd.DataFrame]]:
    """The rows of a split each model of a candidate learns from and is thresholded on, under ``spec``."""
    return {"main": lambda frame: frame, "fallback": lambda frame: fallback_rows(frame, spec)}


#: :func:`model_rows` of the default spec.
MODEL_ROWS: dict[str, Callable[[pd.DataFrame], pd.DataFrame]] = model_rows()


def _threshold(model: TrainedModel, validation: pd.DataFrame, cost_model: CostModel) -> ThresholdChoice:
    return choose_threshold(
        score(model, validation), validation["is_fraud"].to_numpy(), validation["amount"].to_numpy(), cost_model
    )


def train_candidate(
    train: pd.DataFrame,
    validation: pd.DataFrame,
    params: ModelParams,
    cost_model: CostModel,
    progress: Callable[[str], list] | None = None,
    spec: FeatureSpec | None = None,
) -> tuple[Candidate, ThresholdChoice]:
    """Trains the main model and the fallback and chooses each one's cost-minimising threshold.

    An outage hides the history of users who have one, so the fallback learns from, and sets its
    threshold on, the rows of users with history (:func:`fallback_rows`): the population it will
    serve. Each model records the digests of the rows it learnt from and was thresholded on.

    The main model reads every feature of ``spec`` (the default spec when None), the fallback only
    its attributes; the candidate records the spec.

    Returns:
        The candidate (both models with their thresholds), and the main model's threshold choice on
        validation with its cost curve.
    """
    spec = spec or default_spec()
    callbacks = lambda name: progress(name) if progress else []  # noqa: E731
    main = train_model(train, validation, spec.names, spec.categorical, params, callbacks=callbacks("main model"))
    main_choice = _threshold(main, validation, cost_model)
    fallback_categorical = tuple(name for name in spec.categorical if name in spec.fallback)
    fallback = train_model(
        fallback_rows(train, spec),
        fallback_rows(validation, spec),
        spec.fallback,
        fallback_categorical,
        params,
        callbacks=callbacks("fallback model"),
    )
    fallback_choice = _threshold(fallback, fallback_rows(validation, spec), cost_model)
    thresholded = lambda model, choice, rows: ThresholdedModel(  # noqa: E731
        model,
        float(choice.threshold),
        float(choice.expected_cost),
        int(choice.n_alerts),
        RowDigest.of(rows["transaction_id"]),
    )
    candidate = Candidate(
        thresholded(main, main_choice, validation),
        thresholded(fallback, fallback_choice, fallback_rows(validation, spec)),
        params=asdict(params),
        spec=spec.to_dict(),
    )
    return candidate, main_choice
