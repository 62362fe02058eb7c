"""A candidate: the main model, its fallback for unavailable history, and their decision policies."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace

import pandas as pd

from fraud_pipeline.features.spec import FeatureSpec, default_spec
from fraud_pipeline.lib.costs import CostModel, ThresholdChoice, choose_threshold, decision_costs
from fraud_pipeline.lib.policy import DecisionPolicy, PolicyRequest, choose_policy, days_spanned
from fraud_pipeline.training.model import ModelParams, RowDigest, TrainedModel, score, train_model
from fraud_pipeline.training.windows import TrainingWindows


@dataclass(frozen=True)
class ThresholdedModel:
    """A trained model with the decision policy chosen for it on validation.

    Attributes:
        model: The trained model.
        threshold: The policy's global threshold (what every reader of one threshold reads).
        validation_cost: The policy's cost on the validation rows it was chosen on.
        validation_alerts: The policy's alerts on those rows.
        threshold_rows: The rows the policy was chosen on.
        policy: The per-cohort decision policy; None reads as the single ``threshold``.
    """

    model: TrainedModel
    threshold: float
    validation_cost: float
    validation_alerts: int
    threshold_rows: RowDigest | None = None
    policy: DecisionPolicy | None = None

    def decision_policy(self) -> DecisionPolicy:
        """The policy the model is decided with (the single threshold for a model without one)."""
        # a model stored before policies (an older run's pickled output) has no such attribute at all
        policy = getattr(self, "policy", None)
        return policy if policy is not None else DecisionPolicy.single(self.threshold)

    def as_dict(self) -> dict:
        """The model's plain values with its threshold and policy (the shape the bundle and the scorer read)."""
        return {
            **self.model.as_dict(),
            "threshold": self.threshold,
            "policy": self.decision_policy().as_dict(),
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
        policy_request: The decision policy asked for (:meth:`PolicyRequest.as_dict`), which both
            policies were chosen with; None for a candidate from before policies (single thresholds).
    """

    main: ThresholdedModel
    fallback: ThresholdedModel
    params: dict = field(default_factory=dict)
    windows: TrainingWindows | None = None
    spec: dict | None = None
    policy_request: dict | None = None

    def feature_spec(self) -> FeatureSpec:
        """The spec the candidate was trained on (the default spec for a candidate that did not record one)."""
        return FeatureSpec.from_dict(self.spec, "<candidate>") if self.spec else default_spec()

    @property
    def version(self) -> str:
        """The main model's content hash."""
        return self.main.model.version

    @property
    def threshold(self) -> float:
        """The main model's global alert threshold."""
        return self.main.threshold

    @property
    def policy(self) -> DecisionPolicy:
        """The main model's decision policy."""
        return self.main.decision_policy()

    def request(self) -> PolicyRequest | None:
        """The policy the candidate asked for (None: single thresholds, a candidate from before policies)."""
        request = getattr(self, "policy_request", None)
        return None if request is None else PolicyRequest.from_dict(request)

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
            "policy_request": getattr(self, "policy_request", None),
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
            "policy_cells": len(self.main.decision_policy().cells),
            "policy_splits": ", ".join(s.name for s in self.main.decision_policy().splits) or "none (one threshold)",
            "fallback_policy_cells": len(self.fallback.decision_policy().cells),
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


def model_policy(
    model: TrainedModel, rows: pd.DataFrame, request: PolicyRequest | None, cost_model: CostModel, scores=None
) -> DecisionPolicy:
    """The decision policy of one model chosen on its validation rows, as the candidate, the gate and the backtest choose it.

    The requested splits are those whose column the model reads (:meth:`PolicyRequest.settings`);
    the structure is selected on the rows' event times and a capacity is per calendar day they span.

    Args:
        model: The model (its features restrict the splits; it scores the rows unless ``scores`` is given).
        rows: Its validation rows: is_fraud, amount, the split columns and, for selection and a
            capacity, event_time.
        request: The policy asked for; None: the single cost-minimising threshold.
        cost_model: The costs.
        scores: The model's scores of ``rows`` when already computed.
    """
    scores = score(model, rows) if scores is None else scores
    fraud, amount = rows["is_fraud"].to_numpy(), rows["amount"].to_numpy()
    if request is None:
        return DecisionPolicy.single(choose_threshold(scores, fraud, amount, cost_model).threshold)
    timed = "event_time" in rows.columns
    return choose_policy(
        scores,
        fraud,
        amount,
        rows,
        request.settings(model.features),
        cost_model,
        n_days=days_spanned(rows["event_time"]) if timed else None,
        times=rows["event_time"].to_numpy() if timed else None,
    )


def train_candidate(
    train: pd.DataFrame,
    validation: pd.DataFrame,
    params: ModelParams,
    cost_model: CostModel,
    progress: Callable[[str], list] | None = None,
    spec: FeatureSpec | None = None,
    policy: PolicyRequest | None = None,
) -> tuple[Candidate, ThresholdChoice]:
    """Trains the main model and the fallback and chooses each one's decision policy on its validation rows.

    An outage hides the history of users who have one, so the fallback learns from, and chooses its
    policy on, the rows of users with history (:func:`fallback_rows`): the population it will
    serve. Each model records the digests of the rows it learnt from and was thresholded on.

    The main model reads every feature of ``spec`` (the default spec when None), the fallback only
    its attributes; the candidate records the spec and the policy request.

    Args:
        train, validation: The split frames.
        params: LightGBM settings.
        cost_model: The costs.
        progress: Per model name, the LightGBM callbacks to log progress with.
        spec: The feature spec.
        policy: The decision policy asked for (:func:`model_policy`); the default request when None.

    Returns:
        The candidate (both models with their policies), and the main model's single-threshold
        choice on validation with its cost curve.
    """
    spec = spec or default_spec()
    policy = policy or PolicyRequest()
    callbacks = lambda name: progress(name) if progress else []  # noqa: E731

    def thresholded(model: TrainedModel, rows: pd.DataFrame) -> tuple[ThresholdedModel, ThresholdChoice]:
        scores = score(model, rows)
        fraud, amount = rows["is_fraud"].to_numpy(), rows["amount"].to_numpy()
        single = _threshold(model, rows, cost_model)
        chosen = model_policy(model, rows, policy, cost_model, scores)
        if chosen.max_alerts_per_day is None:
            # without a capacity the global threshold is the single cost-minimising one on the same rows
            chosen = replace(chosen, global_threshold=float(single.threshold))
        alerts = chosen.alerts(scores, rows)
        cost = float(decision_costs(fraud, amount, alerts, cost_model).sum())
        digest = RowDigest.of(rows["transaction_id"])
        return ThresholdedModel(model, chosen.global_threshold, cost, int(alerts.sum()), digest, chosen), single

    main = train_model(train, validation, spec.names, spec.categorical, params, callbacks=callbacks("main model"))
    main_thresholded, main_choice = thresholded(main, validation)
    fallback_categorical = tuple(name for name in spec.categorical if name in spec.fallback)
    fallback_validation = fallback_rows(validation, spec)
    fallback = train_model(
        fallback_rows(train, spec),
        fallback_validation,
        spec.fallback,
        fallback_categorical,
        params,
        callbacks=callbacks("fallback model"),
    )
    fallback_thresholded, _ = thresholded(fallback, fallback_validation)
    candidate = Candidate(
        main_thresholded,
        fallback_thresholded,
        params=asdict(params),
        spec=spec.to_dict(),
        policy_request=policy.as_dict(),
    )
    return candidate, main_choice
