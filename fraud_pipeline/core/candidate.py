"""A candidate: the main model, its fallback for unavailable history, and their thresholds."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

from fraud_pipeline.core.costs import CostModel, ThresholdChoice, choose_threshold
from fraud_pipeline.core.features import CATEGORICAL_FEATURES, FEATURE_NAMES
from fraud_pipeline.core.model import ModelParams, TrainedModel, score, train_model
from fraud_pipeline.core.serving import FALLBACK_FEATURES


def _threshold(model: TrainedModel, validation: pd.DataFrame, cost_model: CostModel) -> ThresholdChoice:
    return choose_threshold(
        score(model, validation), validation["is_fraud"].to_numpy(), validation["amount"].to_numpy(), cost_model
    )


def train_candidate(
    train: pd.DataFrame, validation: pd.DataFrame, params: ModelParams, cost_model: CostModel,
    progress: Callable[[str], list] | None = None,
) -> tuple[dict, ThresholdChoice]:
    """Trains the main model and the fallback and chooses each one's cost-minimising threshold.

    An outage hides the history of users who have one, so the fallback learns from, and sets its
    threshold on, the rows of users with history: the population it will serve.

    Returns:
        The candidate (both models with their thresholds), and the main model's threshold choice on
        validation with its cost curve.
    """
    callbacks = (lambda name: progress(name) if progress else [])  # noqa: E731
    main = train_model(train, validation, FEATURE_NAMES, CATEGORICAL_FEATURES, params, callbacks=callbacks("main model"))
    main_choice = _threshold(main, validation, cost_model)
    with_history = lambda frame: frame[frame["n_prior_tx_30d"] > 0]  # noqa: E731
    fallback = train_model(with_history(train), with_history(validation), FALLBACK_FEATURES, CATEGORICAL_FEATURES, params,
                           callbacks=callbacks("fallback model"))
    fallback_choice = _threshold(fallback, with_history(validation), cost_model)
    return {
        **main.as_dict(),
        "version": main.version,
        "threshold": float(main_choice.threshold),
        "validation_cost": float(main_choice.expected_cost),
        "validation_alerts": int(main_choice.n_alerts),
        "fallback": {
            **fallback.as_dict(),
            "threshold": float(fallback_choice.threshold),
            "validation_cost": float(fallback_choice.expected_cost),
            "validation_alerts": int(fallback_choice.n_alerts),
        },
    }, main_choice
