"""The benchmark's machinery at a tiny size: the pandas reference agrees with the engine, and a wrong value is caught."""

import duckdb

from fraud_pipeline.cli import benchmark
from fraud_pipeline.features.table import store_transaction_features
from fraud_pipeline_tests.features.test_features import make_history


def tiny_database(path, corrupt: str | None = None):
    tx, cb, users = make_history(3, n=1_500)
    with duckdb.connect(str(path)) as con:
        for name, frame in {"transactions": tx, "chargebacks": cb, "users": users}.items():
            con.register("frame", frame)
            con.execute(f"CREATE TABLE {name} AS SELECT * FROM frame")
            con.unregister("frame")
        store_transaction_features(con, "bench_features")
        if corrupt:
            con.execute(f"UPDATE bench_features SET {corrupt} WHERE transaction_id = 700")
    return path


def test_reference_agrees_with_the_engine_stored_and_in_memory(tmp_path):
    outcome = benchmark.run_reference(tiny_database(tmp_path / "w.duckdb"))
    assert outcome["feature_mismatches"] == {} and outcome["engine_in_memory_mismatches"] == {}
    assert outcome["pandas_feature_seconds"] > 0 and outcome["engine_compute_seconds"] > 0


def test_the_in_memory_engine_run_is_in_time_order_and_misses_nothing():
    tx, cb, users = make_history(6, n=800)
    shuffled = tx.sample(frac=1.0, random_state=1)  # the sort into time order is part of the timed work
    frame = benchmark.engine_on_frames(shuffled, cb, users).to_pandas()
    assert sorted(frame["transaction_id"]) == sorted(tx["transaction_id"])
    times = tx.set_index("transaction_id").loc[frame["transaction_id"], "event_time"].to_numpy()
    assert (times[1:] >= times[:-1]).all()
    assert set(benchmark.compared_features()) <= set(frame.columns)


def test_rows_already_in_time_order_skip_the_sort_and_give_the_same_features():
    tx, cb, users = make_history(6, n=800)
    ordered = tx.sort_values(["event_time", "transaction_id"]).reset_index(drop=True)
    # renumbered in time order, as the simulator numbers them: the fast paths (no sort, chargebacks by search)
    renumber = dict(zip(ordered["transaction_id"], range(1, len(ordered) + 1)))
    ordered["transaction_id"] = ordered["transaction_id"].map(renumber)
    cb = cb.assign(transaction_id=cb["transaction_id"].map(renumber))
    fast = benchmark.engine_on_frames(ordered, cb, users).to_pandas()
    slow = benchmark.engine_on_frames(
        ordered.sample(frac=1.0, random_state=2), cb.sample(frac=1.0, random_state=3), users
    )
    slow = slow.to_pandas()
    assert fast.equals(slow)
    assert (fast["transaction_id"].to_numpy() == ordered["transaction_id"].to_numpy()).all()


def test_the_in_memory_engine_gives_no_account_age_without_a_user_or_a_creation_time():
    tx, cb, users = make_history(6, n=800)
    first, second = users["user_id"].iloc[0], users["user_id"].iloc[1]
    users = users.assign(created_at=users["created_at"].where(users["user_id"] != first))  # no creation time
    users = users[users["user_id"] != second]  # no such user
    frame = benchmark.engine_on_frames(tx, cb, users).to_pandas().set_index("transaction_id")
    user_of = tx.set_index("transaction_id")["user_id"].loc[frame.index]
    made = users.set_index("user_id")["created_at"].dropna()
    unknown = ~user_of.isin(made.index).to_numpy()  # the history also has users the users table lacks
    assert (user_of == first).any() and (user_of == second).any() and (~unknown).any()
    assert frame["account_age_days"].isna().to_numpy().tolist() == unknown.tolist()


def test_a_wrong_in_memory_engine_value_is_caught(tmp_path, monkeypatch):
    from fraud_pipeline.features import table as features

    real = features.history_features

    def off_by_one(*args, **kwargs):
        columns = real(*args, **kwargs)
        columns["n_merchant_tx_30d"].values[5] += 1
        return columns

    database = tiny_database(tmp_path / "w.duckdb")  # stored with the real engine
    monkeypatch.setattr(features, "history_features", off_by_one)
    outcome = benchmark.run_reference(database)
    assert outcome["engine_in_memory_mismatches"] == {"n_merchant_tx_30d": 1}


def test_reference_catches_a_wrong_value_and_a_filled_null(tmp_path):
    wrong = benchmark.run_reference(tiny_database(tmp_path / "a.duckdb", "n_prior_tx_7d = n_prior_tx_7d + 1"))
    assert wrong["feature_mismatches"] == {"n_prior_tx_7d": 1}
    filled = benchmark.run_reference(
        tiny_database(tmp_path / "b.duckdb", "sum_amount_1h = coalesce(sum_amount_1h, 0) + 0.001")
    )
    assert filled["feature_mismatches"] == {"sum_amount_1h": 1}


def test_unknown_steps_are_counted_as_other_and_the_table_prints():
    stages, unknown = benchmark.bucket_steps({"transaction_features": 2.0, "raw_tables": 1.0, "some_new_step": 5.0})
    assert stages["features"] == 2.0 and stages[benchmark.OTHER] == 5.0 and unknown == {"some_new_step": 5.0}
    run = {
        "n_transactions": 1_000,
        "success": True,
        "end_to_end_seconds": 9.0,
        "stages": stages,
        "other_steps": unknown,
        "sql_feature_seconds": 2.0,
        "engine_feature_seconds": 1.0,
        "engine_compute_seconds": 0.5,
        "pandas_feature_seconds": 3.0,
        "peak_rss_gib": 1.0,
        "peak_rss_gib_pandas": 2.0,
        "feature_mismatches": {},
        "engine_in_memory_mismatches": {},
    }
    table = benchmark.format_table([run, {**run, "end_to_end_seconds": 11.0}], demo_seconds=[30.0])
    assert "| other | 5.0 |" in table and "some_new_step 5.0 s" in table
    assert "| **end to end (whole job)** | 10.0 (0.00 M/s) |" in table
    assert "| **generate to deploy decision** (end of `deployed_model`) | - |" in table
    table = benchmark.format_table([{**run, "deploy_decision_seconds": 7.0}, {**run, "deploy_decision_seconds": 8.0}])
    assert "| **generate to deploy decision** (end of `deployed_model`) | 7.5 |" in table
    assert "| pandas / engine, same frames | 6.0x |" in table and "| pandas / engine read to stored | 3.0x |" in table
    assert "| portable SQL / engine, both read to stored | 2.0x |" in table
    assert "| in-memory engine features equal pandas | yes |" in table
    wrong = benchmark.format_table([{**run, "engine_in_memory_mismatches": {"n_prior_tx_1h": 2}}])
    assert '| in-memory engine features equal pandas | {"n_prior_tx_1h": 2} |' in wrong


def test_each_stage_gets_the_peak_memory_inside_its_own_steps():
    sampler = benchmark.RssSampler()
    sampler.samples = [(1.0, 1.0), (2.0, 3.0), (3.0, 2.0), (4.0, 5.0), (6.0, 9.0)]
    spans = {"transaction_features": (1.5, 3.5), "fraud_model": (3.9, 4.1), "some_new_step": (0.5, 1.2)}
    peaks = benchmark.stage_peaks(spans, sampler)
    assert peaks["features"] == 3.0 and peaks["training"] == 5.0 and peaks[benchmark.OTHER] == 1.0
    assert peaks["labels"] is None  # no step ran, so no sample is attributed to it


def test_the_sampler_reads_this_process_memory_on_linux():
    import sys
    import time

    with benchmark.RssSampler(interval=0.01) as sampler:
        time.sleep(0.1)
    if sys.platform.startswith("linux"):
        assert sampler.samples and all(0 < gib < 1024 for _, gib in sampler.samples)
        assert sampler.peak([(0, time.time())]) == max(g for _, g in sampler.samples)


def test_the_in_memory_engine_computes_another_spec_with_the_same_values(tmp_path, monkeypatch):
    """``--spec``: a spec of a subset of the default features gives exactly the default's values on them."""
    import numpy as np
    import yaml

    from fraud_pipeline.features.spec import FeatureSpec, default_spec

    data = default_spec().to_dict()
    data["features"] = [f for f in data["features"] if not f["name"].endswith(("_1d", "_7d"))]
    subset = FeatureSpec.from_dict(data)
    tx, cb, users = make_history(5, n=600)
    whole = benchmark.engine_on_frames(tx, cb, users).to_pandas()
    part = benchmark.engine_on_frames(tx, cb, users, subset).to_pandas()
    assert list(part.columns) == ["transaction_id", "account_age_days", *subset.history]
    for name in part.columns:
        assert np.array_equal(part[name].isna(), whole[name].isna()), name
        assert np.allclose(part[name].fillna(0), whole[name].fillna(0), rtol=0, atol=0), name
    path = tmp_path / "subset.yaml"
    path.write_text(yaml.safe_dump(data))
    monkeypatch.setenv("FRAUD_PIPELINE_FEATURE_SPEC", str(path))
    assert benchmark.compared_features() == ["account_age_days", *subset.history]
