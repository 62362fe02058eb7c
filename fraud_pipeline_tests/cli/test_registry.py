"""The registry commands and the file scorer as a user runs them: one line for every mistake, no traceback."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from fraud_pipeline.cli.main import main
from fraud_pipeline.deployment.registry import ModelRegistryStore
from fraud_pipeline.lib.warehouse import RunStamp, replace_tables

START = datetime(2025, 1, 1)
#: Two nights of the same world: the scorer must give a row the same history from either.
EARLY, LATE = datetime(2025, 2, 10), datetime(2025, 3, 1)


@pytest.fixture(scope="module")
def world():
    from fraud_pipeline.ingestion.simulator import WorldSpec, simulate_world

    return simulate_world(WorldSpec(start=START, days=60, n_transactions=6_000, seed=3))


def _champion(world) -> dict:
    """A champion trained on the world's point-in-time features: a main model and its fallback."""
    from fraud_pipeline.features.catalog import CATEGORICAL_FEATURES, FALLBACK_FEATURES, FEATURES
    from fraud_pipeline.features.table import transaction_features_table
    from fraud_pipeline.training.model import ModelParams, train_model

    with duckdb.connect() as con:
        for name in ("transactions", "chargebacks", "users"):
            con.register(name, getattr(world, name))
        frame = transaction_features_table(con).to_pandas()
    frame["is_fraud"] = frame["transaction_id"].isin(world.chargebacks["transaction_id"])
    half = len(frame) // 2
    train, validation = frame.iloc[:half], frame.iloc[half:]
    params = ModelParams(max_rounds=15)
    main_model = train_model(train, validation, tuple(f.name for f in FEATURES), CATEGORICAL_FEATURES, params)
    fallback = train_model(train, validation, FALLBACK_FEATURES, CATEGORICAL_FEATURES, params)
    return {
        "main": main_model,
        "fallback": fallback,
        "bundle": {
            "version": "v1",
            "threshold": 0.05,
            "features": list(main_model.features),
            "categories": main_model.categories,
            "windows": {"as_of": LATE.isoformat()},
            "evaluation": {"total_cost": 1.0, "average_precision": 0.5},
            "fallback": {
                **{k: v for k, v in fallback.as_dict().items() if k != "model_text"},
                "threshold": 0.05,
            },
        },
    }


def _data_folder(root: Path, world, as_of: datetime, champion: dict) -> Path:
    """A data folder as a run for ``as_of`` leaves it: the raw tables known then, stamped, and the registry."""
    from fraud_pipeline.ingestion.assets import KNOWN_AT_AS_OF

    root.mkdir(parents=True)
    with duckdb.connect(str(root / "warehouse.duckdb")) as con:
        replace_tables(
            con,
            KNOWN_AT_AS_OF,
            sources={
                "sim_users": world.users,
                "sim_transactions": world.transactions,
                "sim_chargebacks": world.chargebacks,
            },
            params={"as_of": as_of},
            stamp=RunStamp(as_of, f"run-{as_of:%m%d}"),
        )
    store = ModelRegistryStore(root / "registry")
    store.write_bundle(
        "v1",
        champion["main"].model_text,
        champion["bundle"],
        "# v1",
        fallback_text=champion["fallback"].model_text,
    )
    store.promote("v1", as_of=as_of.isoformat(), reason="test")
    return root


@pytest.fixture(scope="module")
def nights(world, tmp_path_factory):
    champion = _champion(world)
    root = tmp_path_factory.mktemp("nights")
    return {
        "early": _data_folder(root / "early", world, EARLY, champion),
        "late": _data_folder(root / "late", world, LATE, champion),
    }


def new_transactions(world, times: dict[str, tuple[datetime, datetime]], per_range: int = 25) -> pd.DataFrame:
    """Transactions as new rows (fresh ids) of the world's users, drawn from the given time ranges."""
    tx = world.transactions
    picked = []
    for label, (low, high) in times.items():
        rows = tx[(tx["event_time"] >= low) & (tx["event_time"] < high)].iloc[:per_range].copy()
        rows["label"] = label
        picked.append(rows)
    frame = pd.concat(picked, ignore_index=True)
    frame["transaction_id"] = 10**9 + np.arange(len(frame))
    return frame


def score(monkeypatch, data: Path, frame: pd.DataFrame, tmp_path: Path, name: str, suffix: str = ".csv"):
    monkeypatch.setenv("FRAUD_PIPELINE_DATA_DIR", str(data))
    path = tmp_path / f"{name}.csv"
    frame.drop(columns=["label"], errors="ignore").to_csv(path, index=False)
    out = tmp_path / f"{name}_decisions{suffix}"
    code = main(["score", str(path), "--out", str(out)])
    return code, out


def read_decisions(out: Path) -> pd.DataFrame:
    reader = pd.read_parquet if out.suffix == ".parquet" else pd.read_csv
    return reader(out).set_index("transaction_id").sort_index()


def test_a_row_sees_the_history_known_before_its_own_time_whichever_night_the_warehouse_holds(
    world, nights, tmp_path, monkeypatch, capsys
):
    frame = new_transactions(
        world,
        {
            "before both": (EARLY - timedelta(days=10), EARLY - timedelta(days=1)),
            "between": (EARLY + timedelta(days=2), LATE - timedelta(days=2)),
        },
    )
    code_early, out_early = score(monkeypatch, nights["early"], frame, tmp_path, "early")
    code_late, out_late = score(monkeypatch, nights["late"], frame, tmp_path, "late")
    assert code_early == code_late == 0
    early, late = read_decisions(out_early), read_decisions(out_late)
    labels = frame.set_index("transaction_id")["label"].sort_index()
    before = labels.index[labels == "before both"]
    pd.testing.assert_frame_equal(early.loc[before], late.loc[before], check_exact=True)
    assert (late.loc[before, "route"] == "main").all()
    between = labels.index[labels == "between"]
    # the early night does not know what happened before these rows: never a history cut short at its night
    assert (late.loc[between, "route"] == "main").all()
    assert (early.loc[between, "route"] == "fallback").all(), early.loc[between, ["route", "reason"]]
    assert early.loc[between, "reason"].str.contains("after the warehouse's as_of 2025-02-10").all()
    assert "rows are after the warehouse's as_of 2025-02-10" in capsys.readouterr().out


def test_a_utc_offset_is_an_instant(world, nights, tmp_path, monkeypatch):
    """10:00+02:00 is 08:00Z: the same rows written with offsets get the same decisions as in UTC."""
    frame = new_transactions(world, {"any": (EARLY + timedelta(days=3), LATE - timedelta(days=3))}, per_range=40)
    utc = frame.assign(event_time=frame["event_time"].dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ"))
    shifted = frame.assign(
        event_time=(frame["event_time"] + pd.Timedelta(hours=2)).dt.strftime("%Y-%m-%dT%H:%M:%S.%f+02:00")
    )
    naive = frame.assign(event_time=(frame["event_time"] + pd.Timedelta(hours=2)).dt.strftime("%Y-%m-%d %H:%M:%S.%f"))
    _, out_utc = score(monkeypatch, nights["late"], utc, tmp_path, "utc")
    _, out_shifted = score(monkeypatch, nights["late"], shifted, tmp_path, "shifted")
    _, out_naive = score(monkeypatch, nights["late"], naive, tmp_path, "naive")
    pd.testing.assert_frame_equal(read_decisions(out_utc), read_decisions(out_shifted), check_exact=True)
    # the offset matters: read as UTC the same clock times are two hours later (other hour, other history)
    assert not read_decisions(out_naive)["score"].equals(read_decisions(out_utc)["score"])
    from fraud_pipeline.deployment.serving import parse_new_transactions_sql

    names = ["transaction_id", "user_id", "merchant_id", "event_time", "amount", "channel", "country", "mcc"]
    with duckdb.connect() as con:
        con.execute(
            "CREATE TABLE raw AS SELECT * FROM (VALUES ('1', '2', '3', '2025-03-01T10:00:00+02:00', '5', 'a', 'b', 'c')) "
            f"AS t({', '.join(names)})"
        )
        parsed = con.execute(parse_new_transactions_sql("raw", dict.fromkeys(names, "VARCHAR"))).fetchone()
    assert parsed[3] == datetime(2025, 3, 1, 8)


def test_out_with_a_parquet_suffix_writes_parquet(world, nights, tmp_path, monkeypatch):
    frame = new_transactions(world, {"any": (EARLY - timedelta(days=5), EARLY - timedelta(days=1))}, per_range=5)
    code, out = score(monkeypatch, nights["late"], frame, tmp_path, "pq", ".parquet")
    assert code == 0 and out.read_bytes()[:4] == b"PAR1"
    decisions = pd.read_parquet(out)
    assert len(decisions) == 5 and set(decisions.columns) >= {"transaction_id", "route", "score", "reason"}


def test_an_unreadable_value_goes_to_review_with_its_reason(world, nights, tmp_path, monkeypatch, capsys):
    frame = new_transactions(world, {"any": (EARLY - timedelta(days=5), EARLY - timedelta(days=1))}, per_range=6)
    text = frame.astype({"amount": object, "transaction_id": object, "event_time": object})
    text.loc[0, "amount"] = "abc"
    text.loc[1, "amount"] = "1e300"
    text.loc[2, "transaction_id"] = "12.5"  # a string id is an id; a decimal number is not
    text.loc[3, "event_time"] = "yesterday"
    code, out = score(monkeypatch, nights["late"], text, tmp_path, "bad")
    printed = capsys.readouterr().out
    assert code == 0 and "Traceback" not in printed
    decisions = pd.read_csv(out)
    by_reason = dict(zip(decisions["reason"], decisions["route"]))
    expected = [
        "invalid value: amount: not a number (abc)",
        "invalid value: amount: out of range (above 1,000,000,000) (1e300)",
        "invalid value: transaction_id: looks like a decimal number (12.5)",
        "invalid value: event_time: unparseable timestamp (yesterday)",
    ]
    for reason in expected:
        assert by_reason.get(reason) == "review", decisions[["transaction_id", "route", "reason"]]
    assert len(decisions) == len(frame)
    assert (decisions["route"] != "review").sum() == len(frame) - 4


def test_scoring_refuses_raw_tables_from_different_writes(world, nights, tmp_path, monkeypatch, capsys):
    import shutil

    data = tmp_path / "mixed"
    shutil.copytree(nights["late"], data)
    with duckdb.connect(str(data / "warehouse.duckdb")) as con:
        # as a run killed between two separate writes would leave them
        replace_tables(con, {"chargebacks": "SELECT * FROM chargebacks"}, stamp=RunStamp(EARLY, "other-run"))
    frame = new_transactions(world, {"any": (EARLY - timedelta(days=5), EARLY)}, per_range=3)
    code, _ = score(monkeypatch, data, frame, tmp_path, "mixed")
    lines = capsys.readouterr().out.strip().splitlines()
    assert code == 2 and len(lines) == 1
    assert "come from different writes" in lines[0] and "other-run" in lines[0]


def test_a_corrupt_warehouse_is_one_line_naming_the_file(nights, world, tmp_path, monkeypatch, capsys):
    import shutil

    data = tmp_path / "corrupt"
    shutil.copytree(nights["late"], data)
    (data / "warehouse.duckdb").write_bytes(b"this is not a duckdb file" * 100)
    frame = new_transactions(world, {"any": (EARLY - timedelta(days=5), EARLY)}, per_range=3)
    code, _ = score(monkeypatch, data, frame, tmp_path, "corrupt")
    lines = capsys.readouterr().out.strip().splitlines()
    assert code == 2 and len(lines) == 1, lines
    assert str(data / "warehouse.duckdb") in lines[0] and "ingest --rebuild" in lines[0]


@pytest.mark.parametrize(
    "problem, expected",
    [
        ("missing", "no such file"),
        ("broken row", "cannot score"),
        ("not utf-8", "wrong encoding: line 2 is not UTF-8"),
        ("wrong suffix", "not a .csv or .parquet file"),
    ],
)
def test_a_file_the_scorer_cannot_read_is_one_line(nights, tmp_path, monkeypatch, capsys, problem, expected):
    monkeypatch.setenv("FRAUD_PIPELINE_DATA_DIR", str(nights["late"]))
    path = tmp_path / ("x.txt" if problem == "wrong suffix" else "x.csv")
    header = b"transaction_id,user_id,merchant_id,event_time,amount,channel,country,mcc\n"
    if problem == "broken row":
        path.write_bytes(header + b'1,2,3,"2025-01-01T00:00:00Z,5,a,b,c\n2,2,3,x,5,a,b,c,d,e\n')
    elif problem == "not utf-8":
        path.write_bytes(header + "1,2,3,2025-01-01T00:00:00Z,5,caf\u00e9,b,c\n".encode("latin-1"))
    code = main(["score", str(path), "--out", str(tmp_path / "out.csv")])
    lines = capsys.readouterr().out.strip().splitlines()
    assert code == 2 and len(lines) == 1 and expected in lines[0], lines


def test_champion_reports_an_unreadable_or_unservable_champion(nights, tmp_path, monkeypatch, capsys):
    import shutil

    data = tmp_path / "registry_damage"
    shutil.copytree(nights["late"], data)
    monkeypatch.setenv("FRAUD_PIPELINE_DATA_DIR", str(data))
    assert main(["champion"]) == 0
    assert "champion: v1" in capsys.readouterr().out
    (data / "registry" / "models" / "v1" / "model.txt").write_text("garbage\n")
    assert main(["champion"]) == 1
    out = capsys.readouterr().out
    assert "champion: unreadable, so no valid champion" in out and "v1/model.txt: not a LightGBM model file" in out
    (data / "registry" / "champion.json").write_text("{")
    assert main(["champion"]) == 1
    assert "champion.json: not valid JSON" in capsys.readouterr().out
    (data / "registry" / "models" / "v1" / "bundle.json").write_text("nope")
    assert main(["champion"]) == 1
    out = capsys.readouterr().out
    assert "v1  unreadable:" in out and "Traceback" not in out


def test_rollback_refuses_an_unservable_version_and_waits_for_no_run(nights, tmp_path, monkeypatch, capsys):
    import shutil
    import subprocess
    import sys

    data = tmp_path / "rollback"
    shutil.copytree(nights["late"], data)
    monkeypatch.setenv("FRAUD_PIPELINE_DATA_DIR", str(data))
    store = ModelRegistryStore(data / "registry")
    bundle = json.loads((store.bundle_dir("v1") / "bundle.json").read_text())
    store.write_bundle("v0", "not a model", {**bundle, "version": "v0"}, "# v0", fallback_text="not a model")
    assert main(["rollback", "v0"]) == 2
    assert "cannot roll back to v0" in capsys.readouterr().out and store.champion()["version"] == "v1"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, sys, time; f = open(sys.argv[1], 'a'); "
            "fcntl.flock(f, fcntl.LOCK_EX); print('held', flush=True); time.sleep(60)",
            str(data / "pipeline.lock"),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        assert main(["rollback", "v1"]) == 3
        assert "another run is in progress" in capsys.readouterr().out
    finally:
        holder.kill()
        holder.wait()


def _with_policy_champion(source: Path, target: Path, main_policy, fallback_policy) -> Path:
    """A copy of a data folder whose champion is v1's models under the given decision policies."""
    import shutil

    shutil.copytree(source, target)
    store = ModelRegistryStore(target / "registry")
    bundle = store.read_bundle("v1")
    bundle["version"] = "v2"
    bundle["policy"] = main_policy.as_dict()
    bundle["fallback"]["policy"] = fallback_policy.as_dict()
    folder = store.bundle_dir("v1")
    store.write_bundle(
        "v2",
        (folder / "model.txt").read_text(),
        bundle,
        "# v2",
        fallback_text=(folder / "fallback_model.txt").read_text(),
    )
    store.promote("v2", as_of=bundle["windows"]["as_of"], reason="test: a per-cell policy")
    return target


def test_the_file_scorer_applies_each_models_decision_policy(world, nights, tmp_path, monkeypatch, capsys):
    from fraud_pipeline.lib.cohort_splits import CohortSpec
    from fraud_pipeline_tests.deployment.policies import hand_policy

    frame = new_transactions(
        world,
        {
            "before both": (EARLY - timedelta(days=20), EARLY - timedelta(days=1)),
            "between": (EARLY + timedelta(days=2), LATE - timedelta(days=2)),
        },
        per_range=60,
    )
    _, out = score(monkeypatch, nights["early"], frame, tmp_path, "single")
    single = read_decisions(out)
    assert (single["threshold"] == 0.05).all() and single["cell"].isna().all()  # an empty cell reads back as NaN
    channel = CohortSpec("channel", "channel")
    main_rows = single["route"] == "main"
    low = float(single.loc[main_rows, "score"].quantile(0.3))
    data = _with_policy_champion(
        nights["early"],
        tmp_path / "policed",
        hand_policy(0.05, channel, {"ecommerce": low}),
        hand_policy(0.05, channel, {"ecommerce": 0.0}),
    )
    code, out = score(monkeypatch, data, frame, tmp_path, "policed")
    assert code == 0 and "Traceback" not in capsys.readouterr().out
    policed = read_decisions(out)
    pd.testing.assert_series_equal(policed["score"], single["score"])
    ecommerce = (frame.set_index("transaction_id")["channel"] == "ecommerce").sort_index()
    main, fallback = policed["route"] == "main", policed["route"] == "fallback"
    assert (main & ecommerce).sum() >= 5 and (fallback & ecommerce).sum() >= 5
    cell = main & ecommerce
    assert (policed.loc[cell, "threshold"] == low).all() and (policed.loc[cell, "cell"] == "channel=ecommerce").all()
    assert (policed.loc[cell, "alert"] == (policed.loc[cell, "score"] >= low)).all()
    assert policed.loc[cell, "alert"].sum() > single.loc[cell, "alert"].sum()
    assert policed.loc[cell, "reason"].str.endswith(f"; threshold {low:.4g} of cell channel=ecommerce").all()
    elsewhere = main & ~ecommerce
    assert (policed.loc[elsewhere, "alert"] == single.loc[elsewhere, "alert"]).all()
    assert policed.loc[elsewhere, "reason"].str.endswith("(cell channel=card_present not seen on validation)").all()
    # rows after the warehouse's night go to the fallback, judged by the fallback's policy, and say both
    gap = fallback & ecommerce
    assert policed.loc[gap, "alert"].all() and (policed.loc[gap, "threshold"] == 0.0).all()
    assert policed.loc[gap, "reason"].str.contains("after the warehouse's as_of 2025-02-10").all()
    assert policed.loc[gap, "reason"].str.endswith("; threshold 0 of cell channel=ecommerce").all()


def test_a_policy_cut_by_a_column_the_scorer_cannot_read_is_one_line(world, nights, tmp_path, monkeypatch, capsys):
    from fraud_pipeline.lib.cohort_splits import CohortSpec
    from fraud_pipeline.lib.policy import DecisionPolicy
    from fraud_pipeline_tests.deployment.policies import hand_policy

    policy = hand_policy(0.05, CohortSpec("segment", "segment"), {"a": 0.01})
    data = _with_policy_champion(nights["late"], tmp_path / "segment", policy, DecisionPolicy.single(0.05))
    frame = new_transactions(world, {"any": (EARLY - timedelta(days=5), EARLY)}, per_range=3)
    code, out = score(monkeypatch, data, frame, tmp_path, "segment")
    lines = capsys.readouterr().out.strip().splitlines()
    assert code == 2 and len(lines) == 1 and not out.exists(), lines
    assert (
        lines[0]
        == "the champion's decision policy cuts rows by segment, which neither the rows to score nor the warehouse has"
    )
