"""The genuine-row sample: every fraud kept, a fixed hash sample of genuine rows, weighted back to scale."""

import numpy as np
import pandas as pd

from fraud_pipeline.features.catalog import FEATURES
from fraud_pipeline.training.model import (
    ModelParams,
    genuine_sample,
    score,
    stable_uniform,
    train_model,
)

CATEGORICAL = ("channel", "mcc", "country")
NAMES = tuple(f.name for f in FEATURES)


def rows(n=40_000, fraud_rate=0.01, seed=0):
    """Rows whose fraud odds rise with amount and one count, at a known fraud rate."""
    rng = np.random.default_rng(seed)
    data = {"transaction_id": rng.permutation(n).astype(np.int64) * 7919 + 3}
    for f in FEATURES:
        if f.categorical:
            data[f.name] = rng.choice(["a", "b", "c"], n)
        elif f.kind == "count":
            data[f.name] = rng.integers(0, 5, n)
        else:
            data[f.name] = rng.random(n) * 10
    data["hour_of_day"] = rng.integers(0, 24, n)
    data["amount"] = rng.lognormal(3.5, 1.0, n)
    logit = (
        np.log(fraud_rate / (1 - fraud_rate))
        - 1.2
        + 1.0 * (data["n_prior_tx_1h"] >= 3)
        + 0.6 * (np.log(data["amount"]) > 4)
    )
    data["is_fraud"] = rng.random(n) < 1 / (1 + np.exp(-logit))
    return pd.DataFrame(data)


def test_stable_uniform_is_uniform_and_depends_only_on_key_and_seed():
    keys = np.arange(1, 200_001, dtype=np.int64)
    u = stable_uniform(keys, seed=7)
    assert u.min() >= 0 and u.max() < 1
    assert np.histogram(u, bins=10, range=(0, 1))[0].min() > 19_000  # each decile within 5% of 20,000
    shuffled = np.random.default_rng(0).permutation(len(keys))
    np.testing.assert_array_equal(stable_uniform(keys[shuffled], seed=7), u[shuffled])
    assert not np.array_equal(stable_uniform(keys, seed=8), u)
    assert np.isfinite(stable_uniform(np.array([-5, 2**62, -(2**63)], dtype=np.int64), seed=0)).all()


def test_sample_keeps_every_fraud_and_about_the_cap_of_genuine_rows_weighted_back_to_their_total():
    frame = rows()
    n_genuine = int((~frame["is_fraud"]).sum())
    sample = genuine_sample(frame, 5_000, seed=7)
    kept = sample.frame
    assert kept["is_fraud"].sum() == frame["is_fraud"].sum()
    assert abs((~kept["is_fraud"]).sum() - 5_000) < 300
    assert sample.rate == 5_000 / n_genuine
    genuine = ~kept["is_fraud"].to_numpy()
    assert (sample.weights[~genuine] == 1).all()
    assert abs(sample.weights[genuine].sum() - n_genuine) / n_genuine < 0.06
    # the same rows in another order give the same sample
    again = genuine_sample(frame.sample(frac=1.0, random_state=3), 5_000, seed=7)
    assert set(again.frame["transaction_id"]) == set(kept["transaction_id"])


def test_under_the_cap_or_with_cap_0_nothing_is_sampled():
    frame = rows(n=5_000)
    for cap in (0, 10_000):
        sample = genuine_sample(frame, cap, seed=7)
        assert sample.rate == 1.0 and len(sample.frame) == len(frame) and (sample.weights == 1).all()


def test_a_sampled_model_keeps_the_populations_score_scale_and_ranks_as_well():
    """The weights are what keep the scale: without them the scores would be inflated by about 1 / rate."""
    train, validation, test = rows(seed=1), rows(seed=2), rows(seed=3)
    params = ModelParams(max_rounds=60, min_data_in_leaf=20)
    full = train_model(
        train, validation, NAMES, CATEGORICAL, params.__class__(**{**params.__dict__, "max_genuine_rows": 0})
    )
    sampled = train_model(
        train, validation, NAMES, CATEGORICAL, params.__class__(**{**params.__dict__, "max_genuine_rows": 4_000})
    )
    assert full.genuine_sample_rate == 1.0
    assert 0.09 < sampled.genuine_sample_rate < 0.11
    fraud_rate = test["is_fraud"].mean()
    full_scores, sampled_scores = score(full, test), score(sampled, test)
    assert 0.7 < sampled_scores.mean() / fraud_rate < 1.4
    assert 0.7 < full_scores.mean() / fraud_rate < 1.4
    from sklearn.metrics import roc_auc_score

    assert roc_auc_score(test["is_fraud"], sampled_scores) > roc_auc_score(test["is_fraud"], full_scores) - 0.03
    # deterministic: the same rows, params and seed give the same model file
    again = train_model(
        train, validation, NAMES, CATEGORICAL, params.__class__(**{**params.__dict__, "max_genuine_rows": 4_000})
    )
    assert again.model_text == sampled.model_text


def test_the_vocabulary_comes_from_every_training_row_not_only_the_sample():
    train, validation = rows(seed=1), rows(seed=2)
    rare = train.index[~train["is_fraud"]][:3]
    train.loc[rare, "mcc"] = "rare"
    model = train_model(train, validation, NAMES, CATEGORICAL, ModelParams(max_rounds=5, max_genuine_rows=1_000))
    assert "rare" in model.categories["mcc"]


def test_uniform_sample_keeps_one_rate_for_frauds_and_genuine_rows():
    from fraud_pipeline.training.model import uniform_sample

    frame = rows(n=60_000, fraud_rate=0.05)
    sample = uniform_sample(frame, 15_000, seed=0)
    assert abs(len(sample) - 15_000) < 600
    assert (
        abs(sample["is_fraud"].mean() - frame["is_fraud"].mean()) < 0.01
    )  # the fraud share is estimated, not inflated
    assert sample["transaction_id"].tolist() == uniform_sample(frame, 15_000, seed=0)["transaction_id"].tolist()
    assert uniform_sample(frame, 0, seed=0) is frame and uniform_sample(frame, 100_000, seed=0) is frame
