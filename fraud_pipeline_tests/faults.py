"""Realistic mistakes, injected into the production code path where it looks them up (issue 19).

Each helper monkeypatches the real function in the module that calls it, so the pipeline's own
assets, checks and deploy run with the mistake in place.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

DAY_US = 86_400 * 10**6


def end_of_day_chargeback_counts(monkeypatch) -> None:
    """The seed's leak: the user's chargeback count computed once per day, at the end of the day, and
    joined to every transaction of that day (a 9:10 transaction sees a chargeback reported at 17:00)."""
    from fraud_pipeline.features import table

    original = table.history_arrays

    def daily_batch(user, merchant, ts, amount, chargeback_user, chargeback_merchant, chargeback_ts):
        computed = original(user, merchant, ts, amount, chargeback_user, chargeback_merchant, chargeback_ts)
        end_of_day = (np.asarray(ts, dtype=np.int64) // DAY_US + 1) * DAY_US
        batch = original(user, merchant, end_of_day, amount, chargeback_user, chargeback_merchant, chargeback_ts)
        computed["n_prior_chargebacks_30d"] = batch["n_prior_chargebacks_30d"]
        return computed

    monkeypatch.setattr(table, "history_arrays", daily_batch)


def filled_model_matrix(monkeypatch, fill: str) -> None:
    """NULL history filled with 0 or with the column's mean inside the function that builds the model's matrix."""
    from fraud_pipeline.training import model

    original = model.to_model_matrix

    def filled(frame, features, categories):
        matrix = original(frame, features, categories)
        for name in matrix.columns:
            if name not in categories:
                value = 0.0 if fill == "zero" else matrix[name].mean()
                matrix[name] = matrix[name].fillna(value)
        return matrix

    monkeypatch.setattr(model, "to_model_matrix", filled)


def trained_on_train_and_test(monkeypatch) -> None:
    """The model fitted on the train rows plus the test rows; the windows untouched."""
    from fraud_pipeline.training import assets

    original = assets.load_split

    def leaky(con, split):
        frame = original(con, split)
        if split == "train":
            frame = pd.concat([frame, original(con, "test")], ignore_index=True)
        return frame

    monkeypatch.setattr(assets, "load_split", leaky)


def threshold_on_test(monkeypatch, con_factory) -> None:
    """Each threshold chosen on the test window instead of validation (the fallback's on its test rows)."""
    from fraud_pipeline.training import candidate
    from fraud_pipeline.training.training_set import load_split

    original = candidate._threshold

    def on_test(model, validation, cost_model):
        with con_factory() as con:
            test = load_split(con, "test")
        fallback = bool((validation["n_prior_tx_30d"] > 0).all())
        return original(model, candidate.fallback_rows(test) if fallback else test, cost_model)

    monkeypatch.setattr(candidate, "_threshold", on_test)


def windows_with_horizon_zero(monkeypatch) -> None:
    """Windows planned with a maturity horizon of 0, whatever label_delay_profile measured."""
    from fraud_pipeline.training import assets

    original = assets.plan_windows
    monkeypatch.setattr(assets, "plan_windows", lambda **kwargs: original(**{**kwargs, "horizon_days": 0.0}))
