"""The feature spec: the default spec's shape, round trips, and one clear line for every bad spec."""

import textwrap

import pytest

from fraud_pipeline.features import catalog
from fraud_pipeline.features.spec import FeatureSpec, SpecError, default_spec, load_spec

GOOD = """\
version: 1
keys:
  user: [user_id]
  device: [device_id]
attributes:
  - {name: amount, column: amount}
features:
  - {name: n_prior_tx_1h, key: user, window: 1h, agg: count}
  - {name: sum_amount_1h, key: user, window: 1h, agg: sum, of: amount}
  - {name: n_device_tx_1h, key: device, window: 1h, agg: count}
"""

#: The old catalogue's names, in order: the default spec must reproduce them before its additions.
TODAY = (
    "amount channel mcc country hour_of_day account_age_days n_prior_tx_1h sum_amount_1h mean_amount_1h "
    "n_prior_tx_1d sum_amount_1d mean_amount_1d n_prior_tx_7d sum_amount_7d mean_amount_7d n_prior_tx_30d "
    "sum_amount_30d mean_amount_30d seconds_since_prev_tx amount_to_mean_30d n_prior_chargebacks_30d "
    "n_merchant_tx_30d n_merchant_chargebacks_30d merchant_chargeback_rate_30d n_prior_user_merchant_tx_30d"
).split()
ADDED = [f"{kind}_{w}" for w in ("1d", "7d") for kind in ("n_merchant_tx", "n_merchant_chargebacks")]


def write(tmp_path, text: str):
    path = tmp_path / "spec.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_default_spec_reproduces_todays_features_then_adds_merchant_risk():
    spec = default_spec()
    assert list(spec.names[: len(TODAY)]) == TODAY
    added = spec.names[len(TODAY) :]
    assert set(ADDED) <= set(added) and {"merchant_chargeback_rate_1d", "merchant_chargeback_rate_7d"} <= set(added)
    assert spec.history_days == 30 and spec.categorical == ("channel", "mcc", "country")
    assert spec.fallback == ("amount", "channel", "mcc", "country", "hour_of_day", "account_age_days")
    assert spec.feature("merchant_chargeback_rate_7d").partner == "n_merchant_tx_7d"
    assert spec.feature("seconds_since_prev_tx").partner == "n_prior_tx_30d"
    assert spec.feature("account_age_days").kind == "aggregate" and not spec.feature("account_age_days").history
    assert catalog.FEATURE_NAMES == spec.names and catalog.HISTORY_DAYS == 30
    assert catalog.FALLBACK_FEATURES == spec.fallback and catalog.HISTORY_FEATURES == spec.history


def test_a_spec_round_trips_through_its_dict_and_digest_tells_specs_apart(tmp_path):
    spec = load_spec(write(tmp_path, GOOD))
    again = FeatureSpec.from_dict(spec.to_dict())
    assert again == spec and again.digest() == spec.digest() and spec.digest() != default_spec().digest()
    assert spec.transaction_columns == ("transaction_id", "event_time", "amount", "user_id", "device_id")
    assert spec.history_days == 1 and spec.fallback == ("amount",) and spec.feature("sum_amount_1h").window == "1h"


def test_check_columns_names_a_missing_column_and_a_non_numeric_sum(tmp_path):
    spec = load_spec(write(tmp_path, GOOD))
    with pytest.raises(SpecError, match=r"spec.yaml:4: keys.device\[0\]: column 'device_id' is not in the"):
        spec.check_columns({"user_id": "BIGINT", "amount": "DOUBLE"})
    text = GOOD.replace("of: amount}", "of: currency}")
    spec = load_spec(write(tmp_path, text))
    with pytest.raises(SpecError, match=r"spec.yaml:9: features\[1\].of: sum needs a numeric column; 'currency'"):
        spec.check_columns({"user_id": "BIGINT", "device_id": "VARCHAR", "amount": "DOUBLE", "currency": "VARCHAR"})


BAD = [
    ("version: 2\n", "version", 1, "unsupported version 2"),
    (GOOD + "extras: 1\n", "extras", 11, "unknown field 'extras'"),
    (GOOD.replace("agg: count}", "agg: count, colour: red}", 1), r"features\[0\].colour", 8, "unknown field"),
    (GOOD.replace("key: device", "key: card"), r"features\[2\].key", 10, "unknown key 'card'"),
    (GOOD.replace("window: 1h, agg: sum", "window: 90 minutes, agg: sum"), r"features\[1\].window", 9, "not a window"),
    (GOOD.replace("window: 1h, agg: sum", "window: 0h, agg: sum"), r"features\[1\].window", 9, "not a window"),
    (GOOD.replace("agg: sum", "agg: median"), r"features\[1\].agg", 9, "unknown agg 'median'"),
    (GOOD.replace(", of: amount}", "}"), r"features\[1\]", 9, "sum needs 'of'"),
    (GOOD.replace("agg: sum, of: amount", "agg: sum, of: channel"), r"features\[1\].of", 9, "needs a numeric column"),
    (
        GOOD.replace("agg: count}\n  - {name: sum", "agg: count, of: amount}\n  - {name: sum", 1),
        r"features\[0\].of",
        8,
        "count takes no 'of'",
    ),
    (GOOD.replace("n_device_tx_1h", "sum_amount_1h"), r"features\[2\].name", 10, "declared twice"),
    (GOOD.replace("n_device_tx_1h", "Device-Tx"), r"features\[2\].name", 10, "not a snake_case name"),
    (
        GOOD.replace("window: 1h, agg: sum", "window: 2h, agg: sum"),
        r"features\[1\].agg",
        9,
        "declare a count on key user over 2h as its partner",
    ),
    (GOOD.replace("device: [device_id]", "device: [device_id, device_id]"), "keys.device", 4, "same column"),
    (GOOD.replace("device: [device_id]", "device: [a, b, c]"), "keys.device", 4, "one transaction column or a pair"),
    (GOOD.replace("{name: amount, column: amount}", "{name: amount}"), r"attributes\[0\]", 6, "exactly one of"),
    (
        GOOD.replace("column: amount}", "column: amount, categorical: maybe}"),
        r"attributes\[0\].categorical",
        6,
        "true or false",
    ),
    (
        GOOD.replace("{name: amount, column: amount}", "{name: tod, derive: moon_phase}"),
        r"attributes\[0\].derive",
        6,
        "unknown derivation",
    ),
    (GOOD.replace("  user: [user_id]\n", "  user: [user_id]\n  user: [user_id]\n"), "keys.user", 4, "declared twice"),
    (GOOD.replace("features:", "features: [\n"), "<yaml>", None, ""),
    (
        GOOD.replace("{name: amount, column: amount}", "{name: event_time, column: amount}"),
        r"attributes\[0\].name",
        6,
        "column of every features table",
    ),
]


@pytest.mark.parametrize(("text", "field", "line", "message"), BAD)
def test_a_bad_spec_is_one_line_naming_file_line_and_field(tmp_path, text, field, line, message):
    with pytest.raises(SpecError) as caught:
        load_spec(write(tmp_path, text))
    error = str(caught.value)
    assert "\n" not in error
    assert error.startswith(f"{tmp_path / 'spec.yaml'}:{line if line is not None else ''}")
    assert f": {field.replace(chr(92), '')}: " in error, error
    assert message in error


def test_missing_and_empty_files_are_clear(tmp_path):
    with pytest.raises(SpecError, match="cannot read the feature spec"):
        load_spec(tmp_path / "nope.yaml")
    with pytest.raises(SpecError, match="the file is empty"):
        load_spec(write(tmp_path, ""))


def test_from_dict_names_the_field_without_a_line():
    data = default_spec().to_dict()
    data["features"][0]["window"] = "1w"
    with pytest.raises(SpecError, match=r"^<dict>: features\[0\].window: '1w' is not a window"):
        FeatureSpec.from_dict(data)


def test_the_feature_spec_resource_reads_the_environment_and_defaults_to_the_built_in_spec(tmp_path, monkeypatch):
    from fraud_pipeline.definitions import default_resources
    from fraud_pipeline.resources import FeatureSpecSettings

    monkeypatch.delenv("FRAUD_PIPELINE_FEATURE_SPEC", raising=False)
    assert FeatureSpecSettings.from_environment().spec() == default_spec()
    path = write(tmp_path, GOOD)
    monkeypatch.setenv("FRAUD_PIPELINE_FEATURE_SPEC", str(path))
    assert default_resources(tmp_path / "data")["feature_spec"].spec() == load_spec(path)
    with pytest.raises(SpecError, match="cannot read the feature spec"):
        FeatureSpecSettings(path=str(tmp_path / "missing.yaml")).spec()
