"""A candidate: the main model, its fallback for unavailable history, and their thresholds."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace

import pandas as pd

from fraud_pipeline.features.catalog import (
    CATEGORICAL_FEATURES,
    FALLBACK_FEATURES,
    FEATURE_NAMES,
)
from fraud_pipeline.lib.costs import CostModel, ThresholdChoice, choose_threshold
from fraud_pipeline.training.model import ModelParams, TrainedModel, score, train_model
from fraud_pipeline.training.windows import TrainingWindows


@dataclass(frozen=True)
class ThresholdedModel:
    """A trained model with the cost-minimising threshold chosen for it on validation."""

    model: TrainedModel
    threshold: float
    validation_cost: float
    validation_alerts: int

    def as_dict(self) -> dict:
        """The model's plain values with its threshold (the shape the bundle and the scorer read)."""
        return {
            **self.model.as_dict(),
            "threshold": self.threshold,
            "validation_cost": self.validation_cost,
            "validation_alerts": self.validation_alerts,
        }


@dataclass(frozen=True)
class Candidate:
    """What ``fraud_model`` hands on: the main model and its fallback, each with its threshold.

    Attributes:
        main: The model on every feature.
        fallback: The model without history features, for rows whose history is unavailable.
        params: The LightGBM settings both were trained with.
        windows: The windows the candidate was trained and validated on (None outside a run).
    """

    main: ThresholdedModel
    fallback: ThresholdedModel
    params: dict = field(default_factory=dict)
    windows: TrainingWindows | None = None

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
        }

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
        }


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
) -> tuple[Candidate, ThresholdChoice]:
    """Trains the main model and the fallback and chooses each one's cost-minimising threshold.

    An outage hides the history of users who have one, so the fallback learns from, and sets its
    threshold on, the rows of users with history: the population it will serve.

    Returns:
        The candidate (both models with their thresholds), and the main model's threshold choice on
        validation with its cost curve.
    """
    callbacks = lambda name: progress(name) if progress else []  # noqa: E731
    main = train_model(
        train, validation, FEATURE_NAMES, CATEGORICAL_FEATURES, params, callbacks=callbacks("main model")
    )
    main_choice = _threshold(main, validation, cost_model)
    with_history = lambda frame: frame[frame["n_prior_tx_30d"] > 0]  # noqa: E731
    fallback = train_model(
        with_history(train),
        with_history(validation),
        FALLBACK_FEATURES,
        CATEGORICAL_FEATURES,
        params,
        callbacks=callbacks("fallback model"),
    )
    fallback_choice = _threshold(fallback, with_history(validation), cost_model)
    thresholded = lambda model, choice: ThresholdedModel(  # noqa: E731
        model, float(choice.threshold), float(choice.expected_cost), int(choice.n_alerts)
    )
    candidate = Candidate(thresholded(main, main_choice), thresholded(fallback, fallback_choice), params=asdict(params))
    return candidate, main_choice
