"""The model card shows the feature spec the model was trained on: every feature's key, window and aggregate, and its digest."""

from pathlib import Path

from fraud_pipeline.deployment.model_card import render_model_card
from fraud_pipeline.features.spec import default_spec, load_spec
from fraud_pipeline_tests.deployment.test_model_card_markup import hostile_bundle

FOREIGN = load_spec(Path(__file__).resolve().parents[1] / "foreign_spec.yaml")


def test_the_card_lists_the_bundles_spec_with_its_digest():
    card = render_model_card({**hostile_bundle(), "feature_spec": FOREIGN.to_dict()})
    assert f"- digest: {FOREIGN.digest()}\n" in card
    assert "- keys: user = user_id; merchant = merchant_id; device = device_id" in card
    assert "- fallback model (history unavailable) reads: amount, hour_of_day" in card
    assert "| n_device_tx_1h | history count | device | 1h | count |  | Device's payments in the 1h before t. |" in card
    assert "| n_devices_7d | history aggregate | user | 7d | distinct | device_id |" in card
    rows = [line for line in card.splitlines() if line.startswith("| ") and " | history " in line]
    assert len(rows) == len(FOREIGN.aggregates)
    assert "channel" not in card.split("## Feature spec")[1].split("## Gates")[0]


def test_a_bundle_without_a_spec_was_trained_on_the_default_spec_and_says_so():
    card = render_model_card(hostile_bundle())
    assert f"- digest: {default_spec().digest()} (the built-in default spec: the bundle records none)" in card
    assert "| merchant_chargeback_rate_7d | history aggregate | merchant | 7d | label_rate |" in card
