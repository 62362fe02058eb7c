"""A file registry of model bundles and the champion pointer.

Layout under the registry root::

    models/<version>/model.txt       LightGBM model file
    models/<version>/fallback_model.txt  the model served when history is unavailable
    models/<version>/bundle.json     threshold, features, categories, windows, metrics, gates
    models/<version>/MODEL_CARD.md   a short human-readable card
    models/<version>/report.html     the evaluation report (plots, metrics, gates)
    history.jsonl                    every promotion and refusal, append-only: the source of the champion
    champion.json                    the current champion's version and why it was promoted (a copy of
                                     the history's last promotion, for reading by eye)

What a kill at any moment leaves:

* A version is listed once its ``bundle.json`` exists, and ``bundle.json`` is the last file of a
  version to appear: a new version is written into a hidden temporary folder and renamed into
  place whole; an existing one (same version = same model file) has its card and bundle replaced
  file by file, each by an atomic rename. So a listed version always has every file, each whole.
* The champion is the last ``promoted`` event of ``history.jsonl``; a promotion appends that line
  (flushed to disk) before it rewrites ``champion.json``. A kill in between leaves a
  ``champion.json`` one promotion behind, which the history overrides; a torn last line (killed
  while appending) is no event. So the pointer is always one the history explains.

Reading validates: an unreadable ``champion.json``, ``bundle.json`` or history line, a champion
whose folder is gone, whose model file is not a LightGBM model or whose decision policy is malformed
raise :class:`RegistryError`, one line naming the file (and for a policy, the field).
"""

from __future__ import annotations

import json
import math
import os
import shutil
from dataclasses import MISSING, fields
from pathlib import Path

from fraud_pipeline.lib.policy import CellChoice, DecisionPolicy

MODEL_FILES = ("model.txt", "fallback_model.txt")
#: What serving reads from a bundle; a champion's bundle without one of them cannot be served.
SERVING_KEYS = ("threshold", "features", "categories", "fallback", "windows")


#: The history events that are a night's deploy decision (a rollback is a promotion too, by hand).
DECISION_EVENTS = ("promoted", "kept_champion", "blocked", "refused")


class RegistryError(RuntimeError):
    """A registry file is missing or unreadable; the message is one line naming the file."""


#: How a policy's infinite bin edge is written (JSON has no infinity).
_INFINITE_EDGES = ("inf", "-inf")


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def policy_problem(values, field: str) -> str | None:
    """What is wrong with a bundle's decision policy (as ``DecisionPolicy.as_dict`` writes it), or None.

    Args:
        values: The recorded policy.
        field: Where it sits in ``bundle.json`` (``policy``, ``fallback.policy``), to name the field at fault.

    Returns:
        ``<field>: <problem>`` for the first problem found (``policy.cells[2].threshold: not a finite
        number (nan)``), None for a policy serving can apply.
    """
    if not isinstance(values, dict):
        return f"{field}: not an object"
    threshold = values.get("global_threshold")
    if not _is_number(threshold) or not math.isfinite(threshold):
        return f"{field}.global_threshold: not a finite number ({threshold!r})"
    for key in ("splits", "cells", "selection"):
        if not isinstance(values.get(key, []), list):
            return f"{field}.{key}: not a list"
    for i, split in enumerate(values.get("splits", [])):
        where = f"{field}.splits[{i}]"
        if not isinstance(split, dict):
            return f"{where}: not an object"
        for key in ("name", "column"):
            if not isinstance(split.get(key), str) or not split[key]:
                return f"{where}.{key}: not a name ({split.get(key)!r})"
        bins = split.get("bins")
        if bins is not None:
            edges = (
                [float(b) if _is_number(b) or b in _INFINITE_EDGES else math.nan for b in bins]
                if isinstance(bins, list)
                else []
            )
            if len(edges) < 2 or any(math.isnan(e) for e in edges) or any(a >= b for a, b in zip(edges, edges[1:])):
                return f"{where}.bins: not increasing bin edges (numbers, or 'inf' / '-inf') ({bins!r})"
    names = {f.name for f in fields(CellChoice)}
    required = {f.name for f in fields(CellChoice) if f.default is MISSING and f.default_factory is MISSING}
    for i, cell in enumerate(values.get("cells", [])):
        where = f"{field}.cells[{i}]"
        if not isinstance(cell, dict):
            return f"{where}: not an object"
        if not required <= set(cell) <= names:
            lacking, unknown = sorted(required - set(cell)), sorted(set(cell) - names)
            return f"{where}: " + "; ".join(
                part
                for part in (lacking and f"lacks {', '.join(lacking)}", unknown and f"unknown {', '.join(unknown)}")
                if part
            )
        if not isinstance(cell["cell"], str):
            return f"{where}.cell: not a text ({cell['cell']!r})"
        if not _is_number(cell["threshold"]) or not math.isfinite(cell["threshold"]):
            return f"{where}.threshold: not a finite number ({cell['threshold']!r})"
    if values.get("cells") and not values.get("splits"):
        return f"{field}.cells: cells without the splits that cut them"
    try:
        DecisionPolicy.from_dict(values)
    except (KeyError, TypeError, ValueError) as error:
        return f"{field}: unreadable ({type(error).__name__}: {error})"
    return None


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_file(path: Path, text: str) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        _write_file(tmp, text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _read_text(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RegistryError(f"{path}: missing ({what})") from None
    except (OSError, UnicodeDecodeError) as error:
        raise RegistryError(f"{path}: unreadable ({what}): {error}") from None


def _read_json(path: Path, what: str) -> dict:
    text = _read_text(path, what)
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise RegistryError(f"{path}: not valid JSON ({what}): {error}") from None
    if not isinstance(value, dict):
        raise RegistryError(f"{path}: not a JSON object ({what})")
    return value


def check_model_text(path: Path, text: str) -> None:
    """Raises :class:`RegistryError` unless ``text`` loads as a LightGBM model."""
    import lightgbm as lgb

    try:
        booster = lgb.Booster(model_str=text)
        booster.num_trees()
    except Exception as error:  # LightGBM raises its own error type, or ValueError, for a bad file
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise RegistryError(f"{path}: not a LightGBM model file ({first})") from None


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
        """Writes a model version's files so that it is listed only once every file is whole.

        Rewriting the same version with the same content is a no-op.
        """
        folder = self.bundle_dir(version)
        files = {"model.txt": model_text}
        if fallback_text is not None:
            files["fallback_model.txt"] = fallback_text
        files["MODEL_CARD.md"] = card
        files["bundle.json"] = json.dumps(bundle, indent=2, sort_keys=True, default=str)  # last: it lists the version
        if folder.exists():
            # the version's report may be there already; bundle.json still comes last
            for name, text in files.items():
                path = folder / name
                if not path.exists() or path.read_text(encoding="utf-8") != text:
                    _write_atomic(path, text)
            return folder
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = folder.with_name(f".{version}.{os.getpid()}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            tmp.mkdir()
            for name, text in files.items():
                _write_file(tmp / name, text)
            _fsync_dir(tmp)
            os.replace(tmp, folder)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        _fsync_dir(folder.parent)
        return folder

    def write_report(self, version: str, html: str) -> Path:
        """Writes a model version's evaluation report next to its model and returns its path."""
        path = self.bundle_dir(version) / "report.html"
        _write_atomic(path, html)
        return path

    def read_bundle(self, version: str) -> dict:
        """The bundle of a model version.

        Raises:
            FileNotFoundError: No such version.
            RegistryError: Its ``bundle.json`` is not a JSON object.
        """
        path = self.bundle_dir(version) / "bundle.json"
        if not path.exists():
            raise FileNotFoundError(f"no model version {version!r} in the registry at {self.root}")
        return _read_json(path, f"bundle of model version {version}")

    def read_model_text(self, version: str) -> str:
        """The LightGBM model file of a model version."""
        return _read_text(self.bundle_dir(version) / "model.txt", f"model file of version {version}")

    def scoring_bundle(self, version: str) -> dict:
        """A bundle with its model texts filled in, ready for serving; validated (:meth:`check_version`)."""
        bundle = self.check_version(version)
        bundle["model_text"] = self.read_model_text(version)
        bundle["best_iteration"] = 0
        bundle["fallback"] = {
            **bundle["fallback"],
            "model_text": _read_text(
                self.bundle_dir(version) / "fallback_model.txt", f"fallback model file of version {version}"
            ),
        }
        return bundle

    def check_version(self, version: str) -> dict:
        """The bundle of a version that can be served: its folder, bundle and both model files are readable.

        Raises:
            RegistryError: One line naming the first file that is missing or unreadable.
        """
        folder = self.bundle_dir(version)
        if not folder.is_dir():
            raise RegistryError(f"{folder}: missing (the folder of model version {version})")
        try:
            bundle = self.read_bundle(version)
        except FileNotFoundError:
            raise RegistryError(f"{folder / 'bundle.json'}: missing (bundle of model version {version})") from None
        lacking = [key for key in SERVING_KEYS if key not in bundle]
        if lacking or not isinstance(bundle.get("fallback"), dict) or "threshold" not in bundle["fallback"]:
            raise RegistryError(
                f"{folder / 'bundle.json'}: not a servable bundle (lacks {', '.join(lacking) or 'fallback.threshold'})"
            )
        for model, field in ((bundle, "policy"), (bundle["fallback"], "fallback.policy")):
            # optional: a bundle written before policies is served by its thresholds
            problem = None if model.get("policy") is None else policy_problem(model["policy"], field)
            if problem is None and model.get("policy") is not None:
                recorded, threshold = model["policy"]["global_threshold"], model["threshold"]
                if recorded != threshold:
                    problem = f"{field}.global_threshold: {recorded!r} is not the model's threshold {threshold!r}"
            if problem:
                raise RegistryError(f"{folder / 'bundle.json'}: malformed decision policy: {problem}")
        for name in MODEL_FILES:
            path = folder / name
            check_model_text(path, _read_text(path, f"model file of version {version}"))
        return bundle

    def versions(self) -> list[str]:
        """All model versions in the registry (every one with a bundle), sorted."""
        folder = self.root / "models"
        if not folder.exists():
            return []
        return sorted(p.name for p in folder.iterdir() if not p.name.startswith(".") and (p / "bundle.json").exists())

    def champion(self) -> dict | None:
        """The champion pointer (the history's last promotion), or None before the first promotion.

        Raises:
            RegistryError: ``champion.json`` or a history line is unreadable.
        """
        path = self.root / "champion.json"
        pointer = _read_json(path, "the champion pointer") if path.exists() else None
        promoted = [e for e in self.history() if e.get("event") == "promoted"]
        if promoted:
            last = promoted[-1]
            # a kill between the history line and champion.json leaves the file one promotion behind
            if pointer is None or pointer.get("version") != last.get("version"):
                pointer = {k: last.get(k) for k in ("version", "as_of", "reason", "previous_version")}
        if pointer is not None and not isinstance(pointer.get("version"), str):
            raise RegistryError(f"{path}: names no model version (champion pointer)")
        return pointer

    def valid_champion(self) -> tuple[dict | None, str | None]:
        """The champion pointer when it can be served, else None and why (None, None before any promotion).

        A run treats an unreadable champion as no valid champion, and records the reason.
        """
        try:
            pointer = self.champion()
            if pointer is not None:
                self.check_version(pointer["version"])
        except RegistryError as error:
            return None, str(error)
        return pointer, None

    def promote(self, version: str, as_of: str, reason: str, details: dict | None = None) -> dict:
        """Moves the champion pointer to ``version``: one history line, then ``champion.json`` to match.

        An unreadable previous champion does not stop the promotion; the event says what it replaced.
        ``details`` (the gates' numbers, say) go into the history line only, not into the pointer.
        """
        self.read_bundle(version)
        try:
            previous = self.champion()
            replaced = None
        except RegistryError as error:
            previous, replaced = None, str(error)
        pointer = {
            "version": version,
            "as_of": as_of,
            "reason": reason,
            "previous_version": previous["version"] if previous else None,
        }
        self.record(
            {
                **(details or {}),
                "event": "promoted",
                **pointer,
                **({"replaced_unreadable": replaced} if replaced else {}),
            }
        )
        _write_atomic(self.root / "champion.json", json.dumps(pointer, indent=2, sort_keys=True))
        return pointer

    def record(self, event: dict) -> None:
        """Appends one event to the registry history, flushed to disk before it returns."""
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.root / "history.jsonl"
        line = json.dumps(event, sort_keys=True, default=str) + "\n"
        with open(path, "a+b") as handle:
            handle.seek(0, os.SEEK_END)
            if handle.tell():
                handle.seek(-1, os.SEEK_END)
                if handle.read(1) != b"\n":  # a line torn by a kill: end it, so it stays apart from this one
                    handle.write(b"\n")
            handle.write(line.encode("utf-8"))
            handle.flush()
            os.fsync(handle.fileno())

    def decisions(self) -> list[dict]:
        """The nights' deploy decisions, oldest first: promoted, kept the champion, blocked (and refused deploys)."""
        return [e for e in self.history() if e.get("event") in DECISION_EVENTS]

    def history(self) -> list[dict]:
        """All recorded events, oldest first; a torn line (a kill while appending) is skipped.

        Raises:
            RegistryError: A line that is not JSON and not the torn remains of an append.
        """
        path = self.root / "history.jsonl"
        if not path.exists():
            return []
        events = []
        for number, line in enumerate(_read_text(path, "the registry history").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                event = None
            if not isinstance(event, dict):
                if self._torn(line):
                    continue
                raise RegistryError(f"{path}: line {number} is not a JSON event")
            events.append(event)
        return events

    @staticmethod
    def _torn(line: str) -> bool:
        """Whether a line is the start of an event cut short (it opens an object and never closes it)."""
        return line.lstrip().startswith("{") and not line.rstrip().endswith("}")
