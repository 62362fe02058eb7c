"""The file registry: versions, the champion pointer, the history."""

from __future__ import annotations

import pytest

from fraud_pipeline.deployment.registry import ModelRegistryStore


def test_registry_promotes_and_keeps_history(tmp_path):
    store = ModelRegistryStore(tmp_path)
    assert store.champion() is None
    store.write_bundle("v1", "model-1", {"threshold": 0.5}, "# v1")
    store.promote("v1", as_of="2025-06-01", reason="gates passed")
    store.write_bundle("v2", "model-2", {"threshold": 0.4}, "# v2")
    pointer = store.promote("v2", as_of="2025-07-01", reason="gates passed")
    assert pointer["previous_version"] == "v1"
    assert store.champion()["version"] == "v2"
    assert store.versions() == ["v1", "v2"]
    assert [e["version"] for e in store.history()] == ["v1", "v2"]
    assert (tmp_path / "models" / "v2" / "model.txt").read_text() == "model-2"


def test_report_is_written_next_to_its_model_and_rewritten_whole(tmp_path):
    store = ModelRegistryStore(tmp_path)
    folder = store.write_bundle("v1", "model", {"threshold": 0.5}, "card")
    path = store.write_report("v1", "<html>first</html>")
    assert path == folder / "report.html" and path.read_text() == "<html>first</html>"
    store.write_report("v1", "<html>second</html>")
    assert path.read_text() == "<html>second</html>"
    assert sorted(p.name for p in folder.iterdir()) == ["MODEL_CARD.md", "bundle.json", "model.txt", "report.html"]


def test_registry_refuses_to_promote_an_unknown_version(tmp_path):
    with pytest.raises(FileNotFoundError):
        ModelRegistryStore(tmp_path).promote("missing", as_of="2025-07-01", reason="x")
    assert ModelRegistryStore(tmp_path).champion() is None
