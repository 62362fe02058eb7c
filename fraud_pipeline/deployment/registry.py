"""A file registry of model bundles and the champion pointer.

Layout under the registry root::

    models/<version>/model.txt       LightGBM model file
    models/<version>/fallback_model.txt  the model served when history is unavailable
    models/<version>/bundle.json     threshold, features, categories, windows, metrics, gates
    models/<version>/MODEL_CARD.md   a short human-readable card
    models/<version>/report.html     the evaluation report (plots, metrics, gates)
    champion.json                    the current champion's version and why it was promoted
    history.jsonl                    every promotion and refusal, append-only

Writes go to a temporary name first and are renamed into place, so a reader never sees half a file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


class ModelRegistryStore:
    """Reads and writes model bundles and the champion pointer under one folder."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def bundle_dir(self, version: str) -> Path:
        """Folder of one model version."""
        return self.root / "models" / version

    def write_bundle(
        self, version: str, model_text: str, bundle: dict, card: str, fallback_text: str | None = None
    ) -> Path:
        """Writes a model version's files; rewriting the same version with the same content is a no-op."""
        folder = self.bundle_dir(version)
        _write_atomic(folder / "model.txt", model_text)
        if fallback_text is not None:
            _write_atomic(folder / "fallback_model.txt", fallback_text)
        _write_atomic(folder / "bundle.json", json.dumps(bundle, indent=2, sort_keys=True, default=str))
        _write_atomic(folder / "MODEL_CARD.md", card)
        return folder

    def write_report(self, version: str, html: str) -> Path:
        """Writes a model version's evaluation report next to its model and returns its path."""
        path = self.bundle_dir(version) / "report.html"
        _write_atomic(path, html)
        return path

    def read_bundle(self, version: str) -> dict:
        """The bundle of a model version."""
        path = self.bundle_dir(version) / "bundle.json"
        if not path.exists():
            raise FileNotFoundError(f"no model version {version!r} in the registry at {self.root}")
        return json.loads(path.read_text(encoding="utf-8"))

    def read_model_text(self, version: str) -> str:
        """The LightGBM model file of a model version."""
        return (self.bundle_dir(version) / "model.txt").read_text(encoding="utf-8")

    def scoring_bundle(self, version: str) -> dict:
        """A bundle with its model texts filled in, ready for serving."""
        bundle = self.read_bundle(version)
        bundle["model_text"] = self.read_model_text(version)
        bundle["best_iteration"] = 0
        bundle["fallback"] = {
            **bundle["fallback"],
            "model_text": (self.bundle_dir(version) / "fallback_model.txt").read_text(encoding="utf-8"),
        }
        return bundle

    def versions(self) -> list[str]:
        """All model versions in the registry, sorted."""
        folder = self.root / "models"
        return sorted(p.name for p in folder.iterdir() if (p / "bundle.json").exists()) if folder.exists() else []

    def champion(self) -> dict | None:
        """The champion pointer, or None before the first promotion."""
        path = self.root / "champion.json"
        return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None

    def promote(self, version: str, as_of: str, reason: str) -> dict:
        """Moves the champion pointer to ``version`` and records it in the history."""
        self.read_bundle(version)
        previous = self.champion()
        pointer = {
            "version": version,
            "as_of": as_of,
            "reason": reason,
            "previous_version": previous["version"] if previous else None,
        }
        _write_atomic(self.root / "champion.json", json.dumps(pointer, indent=2, sort_keys=True))
        self.record({"event": "promoted", **pointer})
        return pointer

    def record(self, event: dict) -> None:
        """Appends one event to the registry history."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / "history.jsonl", "a", encoding="utf-8") as handle:
            handle.write(json.dumps(event, sort_keys=True, default=str) + "\n")

    def history(self) -> list[dict]:
        """All recorded events, oldest first."""
        path = self.root / "history.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
