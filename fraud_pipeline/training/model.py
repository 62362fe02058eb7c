"""LightGBM training and scoring on point-in-time features, NaN kept as NaN.

Fraud is rare, so past a few hundred thousand genuine rows more of them teach the trees little and
cost every boosting round. :func:`genuine_sample` keeps every fraud and a fixed hash sample of the
genuine rows, weighted up by the inverse of the sampling rate so the scores stay on the population's
scale (negative down-sampling with weight correction). It applies to the training rows and to the
validation copy used for early stopping; thresholds are still chosen on every validation row.

Every model records which rows it saw (:class:`RowDigest`: how many, and a sha256 of their sorted
transaction ids), so the deploy gates can recompute them from ``training_set`` instead of trusting
them, and :func:`model_file_rows` and :func:`model_file_missing_types` read from the model file
itself how many rows LightGBM fitted and whether it saw NaN where the table holds NULL.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import lightgbm as lgb
import numpy as np
import pandas as pd

#: Parameters that make the model file reproducible byte for byte on a given machine.
DETERMINISM = {"deterministic": True, "force_row_wise": True}


@dataclass(frozen=True)
class ModelParams:
    """LightGBM settings; see the fields of :class:`fraud_pipeline.training.assets.ModelConfig`."""

    learning_rate: float = 0.05
    num_leaves: int = 31
    min_data_in_leaf: int = 50
    feature_fraction: float = 0.8
    lambda_l2: float = 1.0
    max_rounds: int = 400
    early_stopping_rounds: int = 40
    num_threads: int = 2
    seed: int = 7
    max_genuine_rows: int = 300_000

    def lightgbm(self) -> dict:
        """The parameter dict LightGBM takes."""
        return {
            "objective": "binary",
            "metric": "average_precision",
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "min_data_in_leaf": self.min_data_in_leaf,
            "feature_fraction": self.feature_fraction,
            "lambda_l2": self.lambda_l2,
            "num_threads": self.num_threads,
            "seed": self.seed,
            "verbosity": -1,
            **DETERMINISM,
        }


def stable_uniform(keys: np.ndarray, seed: int) -> np.ndarray:
    """A uniform number in [0, 1) per integer key, the same on every machine and in every row order (splitmix64)."""
    with np.errstate(over="ignore"):
        x = keys.astype(np.int64).view(np.uint64) + np.uint64((0x9E3779B97F4A7C15 * (seed + 1)) % 2**64)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        x = x ^ (x >> np.uint64(31))
    return (x >> np.uint64(11)).astype(np.float64) / float(2**53)


@dataclass(frozen=True)
class GenuineSample:
    """The rows a model learns from: every fraud, and genuine rows kept at ``rate`` with weight 1 / rate."""

    frame: pd.DataFrame
    weights: np.ndarray
    rate: float


def genuine_sample(
    frame: pd.DataFrame, max_genuine_rows: int, seed: int, label: str = "is_fraud", key: str = "transaction_id"
) -> GenuineSample:
    """Every fraud, and about ``max_genuine_rows`` genuine rows chosen by a hash of ``key`` (all of them when fewer).

    The choice depends only on the key and the seed, so the same rows give the same sample in any
    order. Kept genuine rows weigh ``1 / rate``: weighted counts, and so the scores' scale, match
    the full rows'. ``max_genuine_rows`` of 0 keeps everything.
    """
    fraud = frame[label].to_numpy(dtype=bool)
    n_genuine = int((~fraud).sum())
    if max_genuine_rows <= 0 or n_genuine <= max_genuine_rows:
        return GenuineSample(frame, np.ones(len(frame)), 1.0)
    rate = max_genuine_rows / n_genuine
    keep = fraud | (stable_uniform(frame[key].to_numpy(), seed) < rate)
    kept = frame[keep]
    return GenuineSample(kept, np.where(fraud[keep], 1.0, 1.0 / rate), rate)


def uniform_sample(frame: pd.DataFrame, max_rows: int, seed: int, key: str = "transaction_id") -> pd.DataFrame:
    """About ``max_rows`` rows chosen by a hash of ``key`` at one rate for every row (all of them when fewer, or for 0).

    Shares, rates and per-transaction metrics of the sample estimate the whole frame's.
    """
    if max_rows <= 0 or len(frame) <= max_rows:
        return frame
    return frame[stable_uniform(frame[key].to_numpy(), seed) < max_rows / len(frame)]


@dataclass(frozen=True)
class RowDigest:
    """Which rows: how many, and a sha256 of their sorted transaction ids (any order gives the same digest).

    A row given twice counts twice, so a split concatenated with itself or with another split differs.
    """

    n_rows: int
    sha256: str

    @classmethod
    def of(cls, ids) -> RowDigest:
        """The digest of these transaction ids."""
        keys = np.sort(np.asarray(ids, dtype=np.int64))
        return cls(int(len(keys)), hashlib.sha256(keys.astype("<i8").tobytes()).hexdigest())

    @classmethod
    def from_dict(cls, values: dict | None) -> RowDigest | None:
        """Inverse of :func:`dataclasses.asdict`; None (a bundle from before digests) stays None."""
        return cls(int(values["n_rows"]), str(values["sha256"])) if values else None

    def __str__(self) -> str:
        return f"{self.n_rows:,} rows, sha256 {self.sha256[:12]}"


def _digest_dict(digest: RowDigest | None) -> dict | None:
    return None if digest is None else {"n_rows": digest.n_rows, "sha256": digest.sha256}


@dataclass(frozen=True)
class TrainedModel:
    """A trained booster with what is needed to score new rows the same way."""

    model_text: str
    features: tuple[str, ...]
    categories: dict[str, list[str]]
    best_iteration: int
    feature_importance: dict[str, float] = field(default_factory=dict)
    #: Share of genuine training rows the model learnt from (1.0: all of them).
    genuine_sample_rate: float = 1.0
    #: Every training row it was given, before the genuine-row sample.
    train_rows: RowDigest | None = None
    #: The rows LightGBM fitted: the genuine-row sample of ``train_rows`` (the same rows below the cap).
    fit_rows: RowDigest | None = None
    #: The validation rows early stopping watched (the same sample of the validation rows).
    early_stopping_rows: RowDigest | None = None

    @property
    def version(self) -> str:
        """Content hash of the model file: the same data, config and seed give the same version."""
        return hashlib.sha256(self.model_text.encode()).hexdigest()[:16]

    def as_dict(self) -> dict:
        """Plain values for storage (inverse of :meth:`from_dict`)."""
        return {
            "model_text": self.model_text,
            "features": list(self.features),
            "categories": self.categories,
            "best_iteration": self.best_iteration,
            "feature_importance": self.feature_importance,
            "genuine_sample_rate": self.genuine_sample_rate,
            "train_rows": _digest_dict(self.train_rows),
            "fit_rows": _digest_dict(self.fit_rows),
            "early_stopping_rows": _digest_dict(self.early_stopping_rows),
        }

    @classmethod
    def from_dict(cls, values: dict) -> TrainedModel:
        """Rebuilds a model from :meth:`as_dict` output (extra keys are ignored)."""
        return cls(
            model_text=values["model_text"],
            features=tuple(values["features"]),
            categories=values["categories"],
            best_iteration=values["best_iteration"],
            feature_importance=values.get("feature_importance", {}),
            genuine_sample_rate=values.get("genuine_sample_rate", 1.0),
            train_rows=RowDigest.from_dict(values.get("train_rows")),
            fit_rows=RowDigest.from_dict(values.get("fit_rows")),
            early_stopping_rows=RowDigest.from_dict(values.get("early_stopping_rows")),
        )

    def booster(self) -> lgb.Booster:
        """The LightGBM booster."""
        return lgb.Booster(model_str=self.model_text)


def category_vocabulary(frame: pd.DataFrame, categorical: tuple[str, ...]) -> dict[str, list[str]]:
    """Sorted category values seen in the training rows, the fixed encoding for every later frame."""
    return {c: sorted(frame[c].dropna().astype(str).unique().tolist()) for c in categorical}


def to_model_matrix(frame: pd.DataFrame, features: tuple[str, ...], categories: dict[str, list[str]]) -> pd.DataFrame:
    """Selects features in order; categoricals get the training vocabulary (unseen -> NaN); NULL stays NaN."""
    matrix = pd.DataFrame(index=frame.index)
    for name in features:
        if name in categories:
            matrix[name] = pd.Categorical(frame[name].astype("string").astype(object), categories=categories[name])
        else:
            matrix[name] = pd.to_numeric(frame[name], errors="raise").astype("float64")
    return matrix


def train_model(
    train: pd.DataFrame,
    validation: pd.DataFrame,
    features: tuple[str, ...],
    categorical: tuple[str, ...],
    params: ModelParams,
    label: str = "is_fraud",
    callbacks: Sequence[Callable] = (),
    key: str = "transaction_id",
) -> TrainedModel:
    """Trains LightGBM with early stopping on validation average precision.

    Both splits are cut to ``params.max_genuine_rows`` genuine rows by :func:`genuine_sample`
    (weighted); the category vocabulary comes from every training row. ``callbacks`` are extra
    LightGBM callbacks (e.g. progress logging); they must not change training. The model records
    the digests of the rows it was given, fitted and stopped on (``key`` identifies a row).

    Raises:
        ValueError: If a split has no fraud or no genuine rows.
    """
    for name, split in {"train": train, "validation": validation}.items():
        n_fraud = int(split[label].sum())
        if n_fraud == 0 or n_fraud == len(split):
            raise ValueError(f"the {name} split needs both classes; it has {n_fraud} frauds in {len(split)} rows")
    categories = category_vocabulary(train, tuple(c for c in categorical if c in features))
    learn = genuine_sample(train, params.max_genuine_rows, params.seed, label, key)
    stop = genuine_sample(validation, params.max_genuine_rows, params.seed, label, key)
    train_set = lgb.Dataset(
        to_model_matrix(learn.frame, features, categories),
        label=learn.frame[label].astype(int),
        weight=learn.weights if learn.rate < 1 else None,
        free_raw_data=True,
    )
    valid_set = lgb.Dataset(
        to_model_matrix(stop.frame, features, categories),
        label=stop.frame[label].astype(int),
        weight=stop.weights if stop.rate < 1 else None,
        reference=train_set,
    )
    booster = lgb.train(
        params.lightgbm(),
        train_set,
        num_boost_round=params.max_rounds,
        valid_sets=[valid_set],
        valid_names=["validation"],
        callbacks=[lgb.early_stopping(params.early_stopping_rounds, verbose=False), *callbacks],
    )
    best = booster.best_iteration or params.max_rounds
    importance = dict(zip(booster.feature_name(), booster.feature_importance("gain", iteration=best).tolist()))
    return TrainedModel(
        model_text=booster.model_to_string(num_iteration=best),
        features=tuple(features),
        categories=categories,
        best_iteration=int(best),
        feature_importance={k: float(v) for k, v in importance.items()},
        genuine_sample_rate=float(learn.rate),
        train_rows=RowDigest.of(train[key]),
        fit_rows=RowDigest.of(learn.frame[key]),
        early_stopping_rows=RowDigest.of(stop.frame[key]),
    )


def score(model: TrainedModel, frame: pd.DataFrame, booster: lgb.Booster | None = None) -> np.ndarray:
    """Fraud scores in [0, 1] for the rows of ``frame``."""
    if frame.empty:
        return np.array([], dtype=float)
    booster = booster or model.booster()
    return booster.predict(to_model_matrix(frame, model.features, model.categories))


#: LightGBM's missing-value type of a numeric split, bits 2-3 of its ``decision_type``.
_MISSING_TYPES = {0: "none", 1: "zero", 2: "nan"}


def _model_file_trees(model_text: str) -> tuple[list[str], list[dict[str, str]]]:
    """The model file's feature names and, per tree, its ``key=value`` lines."""
    names: list[str] = []
    trees: list[dict[str, str]] = []
    for line in model_text.splitlines():
        if line.startswith("end of trees"):
            break
        if line.startswith("Tree="):
            trees.append({})
        elif "=" in line:
            key, value = line.split("=", 1)
            if trees:
                trees[-1][key] = value
            elif key == "feature_names":
                names = value.split()
    return names, trees


def model_file_rows(model_text: str) -> int | None:
    """How many rows LightGBM fitted, read from the model file: the first tree's root count.

    Without bagging (none of :class:`ModelParams` turns it on) every tree's root holds every row.
    None when the file does not say (a tree without a split records no count).
    """
    _, trees = _model_file_trees(model_text)
    counts = (trees[0].get("internal_count") or trees[0].get("leaf_count")) if trees else None
    return int(counts.split()[0]) if counts else None


def model_file_missing_types(model_text: str) -> dict[str, set[str]]:
    """Each numeric feature the model splits on, with the missing-value types of its splits, from the model file.

    LightGBM gives a feature the type ``nan`` when its training matrix held NaN there, and ``none``
    when it held none: a NULL filled before the model saw it leaves ``none`` in the file.
    """
    names, trees = _model_file_trees(model_text)
    found: dict[str, set[str]] = {}
    for tree in trees:
        if "split_feature" not in tree:
            continue
        for feature, decision in zip(tree["split_feature"].split(), tree["decision_type"].split()):
            if int(decision) & 1:  # a categorical split: its missing handling is categorical
                continue
            found.setdefault(names[int(feature)], set()).add(_MISSING_TYPES[(int(decision) >> 2) & 3])
    return found


def reference_matrix(frame: pd.DataFrame, features: tuple[str, ...], categories: dict[str, list[str]]) -> pd.DataFrame:
    """What the model must receive, built from the table without :func:`to_model_matrix`.

    NaN exactly where the table is NULL (or a category is outside the training vocabulary), the
    table's value everywhere else. The last-mile check holds :func:`to_model_matrix` and the served
    scores to it.
    """
    columns = {}
    for name in features:
        if name in categories:
            values = frame[name]
            codes = pd.Index(categories[name]).get_indexer(values.astype(str).to_numpy())
            codes[values.isna().to_numpy()] = -1
            columns[name] = pd.Categorical.from_codes(codes, categories=categories[name])
        else:
            columns[name] = frame[name].to_numpy(dtype="float64", na_value=np.nan)
    return pd.DataFrame(columns, index=frame.index)


def matrix_problems(frame: pd.DataFrame, model: TrainedModel) -> dict[str, dict[str, int]]:
    """Where the matrix :func:`to_model_matrix` builds for ``model`` differs from :func:`reference_matrix`.

    Returns:
        Feature -> counts of cells ``filled`` (NULL in the table, a value in the matrix: a 0 or a mean
        standing in for absence), ``lost`` (a value in the table, NaN in the matrix) and ``changed``;
        only features with a difference. ``<columns>`` when the matrix does not hold the model's
        features in order.
    """
    built = to_model_matrix(frame, model.features, model.categories)
    if list(built.columns) != list(model.features) or len(built) != len(frame):
        return {"<columns>": {"expected": len(model.features), "got": len(built.columns)}}
    reference = reference_matrix(frame, model.features, model.categories)
    problems = {}
    for name in model.features:
        got, want = built[name], reference[name]
        got_nan, want_nan = got.isna().to_numpy(), want.isna().to_numpy()
        if name in model.categories:
            differs = got.astype(object).to_numpy() != want.astype(object).to_numpy()
        else:
            differs = got.to_numpy(dtype="float64") != want.to_numpy(dtype="float64")
        counts = {
            "filled": int((want_nan & ~got_nan).sum()),
            "lost": int((~want_nan & got_nan).sum()),
            "changed": int((~want_nan & ~got_nan & differs).sum()),
        }
        if any(counts.values()):
            problems[name] = counts
    return problems


def served_score_mismatches(frame: pd.DataFrame, model: TrainedModel, booster: lgb.Booster | None = None) -> int:
    """Rows whose served score (:func:`score`) differs from the model's score of :func:`reference_matrix`."""
    if frame.empty:
        return 0
    booster = booster or model.booster()
    served = score(model, frame, booster)
    expected = booster.predict(reference_matrix(frame, model.features, model.categories))
    return int((~np.isclose(served, expected, rtol=1e-12, atol=0.0)).sum())
