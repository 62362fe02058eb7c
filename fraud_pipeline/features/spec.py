"""The feature spec: entity keys, transaction attributes and point-in-time aggregates, declared as data.

A spec is one YAML file (the format is in ``docs/features.md``; the built-in one is
``default_spec.yaml`` beside this module). :func:`load_spec` validates every field and raises
:class:`SpecError` with one line ``<file>:<line>: <field path>: <what is wrong>``; the result is a
frozen :class:`FeatureSpec` from which the engine, the portable SQL, the oracle, the pandas reference,
the contracts, the outage replay's history set and the fallback model all derive.

Every ``features:`` entry is an aggregate over the key's earlier rows in ``[t - window, t)`` (rows at
the same microsecond excluded) or over the label events (chargebacks) *reported* in that window. A
``count`` or ``label_count`` is never NULL (0 means no history); every other aggregate is NULL
exactly when its availability partner, the ``count`` on the same key and window, is 0. A row whose key
value is NULL has no history on that key.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import yaml

from fraud_pipeline.lib.schema import RAW_COLUMNS

VERSION = 1
#: Window unit suffix -> microseconds.
UNITS = {"s": 10**6, "m": 60 * 10**6, "h": 3_600 * 10**6, "d": 86_400 * 10**6}
DAY_US = UNITS["d"]
#: Aggregates that count (never NULL) and those that take ``of``.
COUNT_AGGS = ("count", "label_count")
NUMERIC_OF_AGGS = ("sum", "mean", "max", "std", "ratio_to_mean")
AGGS = ("count", "sum", "mean", "max", "std", "distinct", "time_since_previous", "ratio_to_mean", "label_count")
AGGS = (*AGGS, "label_rate")
#: Derived attributes: name -> what it is.
DERIVED = {
    "hour_of_day": "UTC hour of the transaction.",
    "account_age_days": "Days since the account was created (NULL if the user is unknown).",
}
#: Columns every features table carries before the features (never feature names).
ID_COLUMNS = ("transaction_id", "user_id", "merchant_id", "event_time")
_NAME = re.compile(r"[a-z][a-z0-9_]*\Z")
_COLUMN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_WINDOW = re.compile(r"([1-9][0-9]*)([smhd])\Z")
_TOP_FIELDS = ("version", "keys", "attributes", "features")
_ATTRIBUTE_FIELDS = ("name", "column", "derive", "categorical", "nullable", "description")
_FEATURE_FIELDS = ("name", "key", "window", "agg", "of", "description")
#: Known transaction columns whose logical type is not numeric (``of`` of a numeric aggregate may not name them).
_NON_NUMERIC = {c for c, t in RAW_COLUMNS["transactions"].items() if t in ("text", "timestamp", "id")}


class SpecError(ValueError):
    """A feature spec is invalid; the message is one line naming the file, line and field."""


@dataclass(frozen=True)
class Feature:
    """One model feature and how its absence is expressed.

    Attributes:
        name: Column name in ``transaction_features``.
        kind: ``count`` (never NULL, 0 means no history), ``aggregate`` (NULL exactly when its
            partner count is 0), or ``attribute`` (a property of the transaction itself).
        description: One line for the UI and the model card.
        partner: For aggregates, the count that explains each NULL.
        categorical: Whether the model treats it as categorical.
        history: Whether it comes from a history service (unavailable during a feature outage).
        key: For history features, the entity key's name.
        window_us: For history features, the window length in microseconds.
        agg: For history features, the aggregate (one of :data:`AGGS`).
        of: The transaction column aggregated (sum, mean, max, std, ratio_to_mean, distinct).
        nullable: For attributes, whether NULL is allowed.
        column: For plain attributes, the transaction column it is read from.
        derive: For derived attributes, which derivation (``hour_of_day``, ``account_age_days``).
    """

    name: str
    kind: str
    description: str
    partner: str | None = None
    categorical: bool = False
    history: bool = True
    key: str | None = None
    window_us: int | None = None
    agg: str | None = None
    of: str | None = None
    nullable: bool = False
    column: str | None = None
    derive: str | None = None

    @property
    def window(self) -> str | None:
        """The window as spec text (``1h``, ``30d``), or None for an attribute."""
        return None if self.window_us is None else window_text(self.window_us)


def window_text(width_us: int) -> str:
    """A window length as spec text in its largest whole unit (``86_400 * 10**6`` -> ``1d``)."""
    for unit in ("d", "h", "m", "s"):
        if width_us % UNITS[unit] == 0:
            return f"{width_us // UNITS[unit]}{unit}"
    raise ValueError(f"{width_us} µs is not a whole number of seconds")


@dataclass(frozen=True)
class FeatureSpec:
    """A validated feature spec.

    Attributes:
        keys: Key name -> its transaction column(s) (one, or a pair).
        attributes: The transaction's own properties, in spec order (never history).
        aggregates: The history features, in spec order.
        source: Where the spec came from (a file path, ``<default>`` or ``<dict>``), for messages.
    """

    keys: dict[str, tuple[str, ...]]
    attributes: tuple[Feature, ...]
    aggregates: tuple[Feature, ...]
    source: str = field(default="<dict>", compare=False)
    lines: dict[str, int] = field(default_factory=dict, compare=False, repr=False)

    @property
    def features(self) -> tuple[Feature, ...]:
        """Every feature: the attributes, then the aggregates."""
        return self.attributes + self.aggregates

    @property
    def names(self) -> tuple[str, ...]:
        """Every feature's name, in order."""
        return tuple(f.name for f in self.features)

    @property
    def categorical(self) -> tuple[str, ...]:
        """The categorical features' names."""
        return tuple(f.name for f in self.features if f.categorical)

    @property
    def history(self) -> tuple[str, ...]:
        """The history features' names (unavailable during a feature outage)."""
        return tuple(f.name for f in self.aggregates)

    @property
    def fallback(self) -> tuple[str, ...]:
        """What the fallback model uses when history is down: the attributes."""
        return tuple(f.name for f in self.attributes)

    @property
    def history_counts(self) -> tuple[str, ...]:
        """The history counts (never NULL for a real row, so a NULL one means history did not answer)."""
        return tuple(f.name for f in self.aggregates if f.kind == "count")

    @property
    def key_columns(self) -> tuple[str, ...]:
        """Every transaction column some key reads, in first-use order."""
        return tuple(dict.fromkeys(c for columns in self.keys.values() for c in columns))

    @property
    def history_days(self) -> int:
        """The longest window in whole days, rounded up (the training warm-up)."""
        return max((math.ceil(f.window_us / DAY_US) for f in self.aggregates), default=0)

    @property
    def transaction_columns(self) -> tuple[str, ...]:
        """The transactions table's columns the spec reads, in first-use order."""
        columns = ["transaction_id", "event_time"]
        for f in self.attributes:
            columns += [f.column] if f.column else (["user_id"] if f.derive == "account_age_days" else [])
        for f in self.aggregates:
            columns += [*self.keys[f.key], *([f.of] if f.of else [])]
        return tuple(dict.fromkeys(columns))

    def feature(self, name: str) -> Feature:
        """The feature of that name (KeyError if none)."""
        for f in self.features:
            if f.name == name:
                return f
        raise KeyError(name)

    def to_dict(self) -> dict:
        """The canonical plain form (what a model bundle records); :meth:`from_dict` reads it back."""
        attributes = []
        for f in self.attributes:
            entry = {"name": f.name, **({"column": f.column} if f.column else {"derive": f.derive})}
            attributes.append(
                {**entry, "categorical": f.categorical, "nullable": f.nullable, "description": f.description}
            )
        features = [
            {
                "name": f.name,
                "key": f.key,
                "window": f.window,
                "agg": f.agg,
                **({"of": f.of} if f.of else {}),
                "description": f.description,
            }
            for f in self.aggregates
        ]
        return {
            "version": VERSION,
            "keys": {name: list(columns) for name, columns in self.keys.items()},
            "attributes": attributes,
            "features": features,
        }

    @classmethod
    def from_dict(cls, data: Mapping, source: str = "<dict>") -> FeatureSpec:
        """A spec from its plain form (as :meth:`to_dict` gives or YAML loads), validated.

        Raises:
            SpecError: If a field is invalid (no line numbers: the message names the field).
        """
        return _build(data, source, {})

    def digest(self) -> str:
        """A stable sha256 of the canonical form: equal specs give equal digests."""
        text = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    def error(self, path: str, message: str) -> SpecError:
        """A :class:`SpecError` for a field of this spec, with its line where the spec came from a file."""
        return SpecError(_where(self.source, self.lines, path) + f"{path}: {message}")

    def check_columns(self, column_types: Mapping[str, str]) -> None:
        """Checks the spec against a transactions table's columns (name -> DuckDB type).

        Raises:
            SpecError: Naming the spec field that reads a column the table lacks, or that takes a
                numeric aggregate of a column that is not numeric.
        """
        available = ", ".join(column_types)
        for key, columns in self.keys.items():
            for i, column in enumerate(columns):
                if column not in column_types:
                    raise self.error(f"keys.{key}[{i}]", f"column {column!r} is not in the transactions ({available})")
        for index, f in enumerate(self.attributes):
            if f.column and f.column not in column_types:
                raise self.error(
                    f"attributes[{index}].column", f"column {f.column!r} is not in the transactions ({available})"
                )
        for index, f in enumerate(self.aggregates):
            if f.of is None:
                continue
            if f.of not in column_types:
                raise self.error(f"features[{index}].of", f"column {f.of!r} is not in the transactions ({available})")
            if f.agg in NUMERIC_OF_AGGS and not _numeric_type(column_types[f.of]):
                raise self.error(
                    f"features[{index}].of", f"{f.agg} needs a numeric column; {f.of!r} is {column_types[f.of]}"
                )


def _numeric_type(sql_type: str) -> bool:
    text = str(sql_type).upper()
    return any(word in text for word in ("INT", "DOUBLE", "FLOAT", "DECIMAL", "REAL", "NUMERIC"))


def _where(source: str, lines: Mapping[str, int], path: str) -> str:
    """``<file>:<line>: `` for the field at ``path`` (its nearest located ancestor), or ``<file>: ``."""
    probe = path
    while True:
        if probe in lines:
            return f"{source}:{lines[probe]}: "
        if not probe:
            return f"{source}: "
        parent = re.sub(r"(\.[^.\[\]]+|\[\d+\])\Z", "", probe)
        probe = "" if parent == probe else parent


def _plain(node: yaml.Node, path: str, lines: dict[str, int], source: str):
    """The Python value of a composed YAML node, recording each field's 1-based line under its path."""
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        out = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise SpecError(f"{source}:{key_node.start_mark.line + 1}: {path or '<top>'}: a key must be a name")
            key = key_node.value
            child = f"{path}.{key}" if path else key
            if key in out:
                raise SpecError(f"{source}:{key_node.start_mark.line + 1}: {child}: declared twice")
            lines[child] = key_node.start_mark.line + 1
            out[key] = _plain(value_node, child, lines, source)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_plain(item, f"{path}[{i}]", lines, source) for i, item in enumerate(node.value)]
    return yaml.constructor.SafeConstructor().construct_object(node)


def load_spec(path: str | Path) -> FeatureSpec:
    """Reads and validates a spec file.

    Raises:
        SpecError: One line ``<file>:<line>: <field path>: <what is wrong>``.
    """
    path = Path(path)
    source = str(path)
    try:
        text = path.read_text()
    except OSError as error:
        raise SpecError(f"{source}: cannot read the feature spec ({error.strerror or error})") from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = f"{mark.line + 1}" if mark is not None else "1"
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise SpecError(f"{source}:{line}: <yaml>: {problem}") from None
    if node is None:
        raise SpecError(f"{source}:1: <top>: the file is empty; declare version, keys, attributes and features")
    lines: dict[str, int] = {}
    data = _plain(node, "", lines, source)
    return _build(data, source, lines)


@lru_cache(maxsize=1)
def default_spec() -> FeatureSpec:
    """The built-in spec (``default_spec.yaml``): today's features plus merchant risk over 1d and 7d."""
    spec = load_spec(Path(__file__).with_name("default_spec.yaml"))
    return spec


def _build(data, source: str, lines: dict[str, int]) -> FeatureSpec:
    def fail(path: str, message: str) -> SpecError:
        return SpecError(_where(source, lines, path) + f"{path or '<top>'}: {message}")

    if not isinstance(data, Mapping):
        raise fail("", "a spec is a mapping with version, keys, attributes and features")
    _unknown(data, _TOP_FIELDS, "", fail)
    if "version" not in data:
        raise fail("", f"missing field 'version' (write version: {VERSION})")
    if data["version"] != VERSION or isinstance(data["version"], bool):
        raise fail("version", f"unsupported version {data['version']!r}; this release reads version {VERSION}")
    keys = _keys(data.get("keys"), fail)
    seen: dict[str, str] = {}

    def claim(name, path: str) -> str:
        if not isinstance(name, str) or not _NAME.match(name):
            raise fail(path, f"{name!r} is not a snake_case name (lower-case letters, digits, _)")
        if name in ID_COLUMNS:
            raise fail(path, f"{name!r} is a column of every features table; choose another name")
        if name in seen:
            raise fail(path, f"{name!r} is declared twice (first at {seen[name]})")
        seen[name] = path
        return name

    attributes = tuple(
        _attribute(entry, f"attributes[{i}]", claim, fail) for i, entry in enumerate(_list(data, "attributes", fail))
    )
    raw_features = _list(data, "features", fail)
    parsed = [_aggregate(entry, f"features[{i}]", claim, keys, fail) for i, entry in enumerate(raw_features)]
    counts = {(f.key, f.window_us): f.name for f in parsed if f.agg == "count"}
    aggregates = []
    for i, f in enumerate(parsed):
        if f.agg in COUNT_AGGS:
            aggregates.append(f)
            continue
        partner = counts.get((f.key, f.window_us))
        if partner is None:
            raise fail(
                f"features[{i}].agg",
                f"{f.agg} has no availability partner: declare a count on key {f.key} over {f.window} as its partner",
            )
        aggregates.append(_replace(f, partner=partner))
    return FeatureSpec(keys=keys, attributes=attributes, aggregates=tuple(aggregates), source=source, lines=lines)


def _replace(feature: Feature, **changes) -> Feature:
    from dataclasses import replace

    return replace(feature, **changes)


def _unknown(entry: Mapping, allowed: tuple[str, ...], path: str, fail: Callable) -> None:
    for name in entry:
        if name not in allowed:
            where = f"{path}.{name}" if path else str(name)
            raise fail(where, f"unknown field {name!r} (allowed: {', '.join(allowed)})")


def _list(data: Mapping, name: str, fail: Callable) -> list:
    value = data.get(name)
    if value is None:
        raise fail("" if name not in data else name, f"missing field {name!r} (a list)")
    if not isinstance(value, list):
        raise fail(name, "must be a list of entries")
    return value


def _keys(value, fail: Callable) -> dict[str, tuple[str, ...]]:
    if value is None:
        raise fail("keys", "missing field 'keys' (key name -> [column] or [column, column])")
    if not isinstance(value, Mapping):
        raise fail("keys", "must map each key name to [column] or [column, column]")
    keys = {}
    for name, columns in value.items():
        path = f"keys.{name}"
        if not isinstance(name, str) or not _NAME.match(name):
            raise fail(path, f"{name!r} is not a snake_case name")
        if isinstance(columns, str):
            columns = [columns]
        if not isinstance(columns, list) or len(columns) not in (1, 2):
            raise fail(path, "a key is one transaction column or a pair of them, e.g. [user_id, merchant_id]")
        for i, column in enumerate(columns):
            if not isinstance(column, str) or not _COLUMN.match(column):
                raise fail(f"{path}[{i}]", f"{column!r} is not a column name")
        if len(set(columns)) != len(columns):
            raise fail(path, "a pair of the same column is that column; declare it once")
        keys[name] = tuple(columns)
    return keys


def _flag(entry: Mapping, name: str, path: str, fail: Callable) -> bool:
    value = entry.get(name, False)
    if not isinstance(value, bool):
        raise fail(f"{path}.{name}", f"must be true or false, not {value!r}")
    return value


def _description(entry: Mapping, path: str, fail: Callable, default: str) -> str:
    value = entry.get("description", default)
    if not isinstance(value, str) or not value.strip() or "\n" in value.strip():
        raise fail(f"{path}.description", "must be one line of text")
    return value.strip()


def _attribute(entry, path: str, claim: Callable, fail: Callable) -> Feature:
    if not isinstance(entry, Mapping):
        raise fail(path, "an attribute is a mapping, e.g. {name: amount, column: amount}")
    _unknown(entry, _ATTRIBUTE_FIELDS, path, fail)
    if "name" not in entry:
        raise fail(path, "missing field 'name'")
    name = claim(entry["name"], f"{path}.name")
    column, derive = entry.get("column"), entry.get("derive")
    if (column is None) == (derive is None):
        raise fail(path, "declare exactly one of 'column' (a transaction column) or 'derive'")
    if column is not None and (not isinstance(column, str) or not _COLUMN.match(column)):
        raise fail(f"{path}.column", f"{column!r} is not a column name")
    if derive is not None and derive not in DERIVED:
        raise fail(f"{path}.derive", f"unknown derivation {derive!r} (known: {', '.join(DERIVED)})")
    categorical = _flag(entry, "categorical", path, fail)
    nullable = _flag(entry, "nullable", path, fail) if "nullable" in entry else derive == "account_age_days"
    default = DERIVED[derive] if derive else f"The transaction's {column}."
    description = _description(entry, path, fail, default)
    # the account age is a value of the user's record, NULL when the user is unknown: an aggregate
    # without a partner, as the catalogue has always called it; every other attribute is an attribute
    return Feature(
        name=name,
        kind="aggregate" if derive == "account_age_days" else "attribute",
        description=description,
        categorical=categorical,
        history=False,
        nullable=nullable,
        column=column,
        derive=derive,
    )


def parse_window(value, path: str, fail: Callable) -> int:
    """A window's text (``1h``, ``30d``) in microseconds."""
    match = _WINDOW.match(value) if isinstance(value, str) else None
    if match is None:
        raise fail(path, f"{value!r} is not a window: a whole number then s, m, h or d (e.g. 1h, 7d)")
    return int(match.group(1)) * UNITS[match.group(2)]


_KEY_PHRASE = {"count": "transactions", "label_count": "chargebacks reported"}


def _default_description(key: str, window: str, agg: str, of: str | None) -> str:
    if agg in _KEY_PHRASE:
        return f"The {key}'s {_KEY_PHRASE[agg]} in the {window} before t."
    if agg == "label_rate":
        return f"The {key}'s chargebacks reported / transactions, both over the {window} before t."
    if agg == "time_since_previous":
        return f"Seconds since the {key}'s previous transaction in the {window} before t."
    if agg == "ratio_to_mean":
        return f"{of} divided by the {key}'s mean {of} over the {window} before t."
    if agg == "distinct":
        return f"Distinct {of} values of the {key}'s transactions in the {window} before t."
    return f"{agg.capitalize()} of the {key}'s {of} in the {window} before t."


def _aggregate(entry, path: str, claim: Callable, keys: dict, fail: Callable) -> Feature:
    if not isinstance(entry, Mapping):
        raise fail(path, "a feature is a mapping, e.g. {name: n_prior_tx_1h, key: user, window: 1h, agg: count}")
    _unknown(entry, _FEATURE_FIELDS, path, fail)
    for required in ("name", "key", "window", "agg"):
        if required not in entry:
            raise fail(path, f"missing field {required!r}")
    name = claim(entry["name"], f"{path}.name")
    key = entry["key"]
    if not isinstance(key, str) or key not in keys:
        raise fail(f"{path}.key", f"unknown key {key!r} (declared: {', '.join(keys) or 'none'})")
    width = parse_window(entry["window"], f"{path}.window", fail)
    agg = entry["agg"]
    if not isinstance(agg, str) or agg not in AGGS:
        raise fail(f"{path}.agg", f"unknown agg {agg!r} (one of: {', '.join(AGGS)})")
    of = entry.get("of")
    takes_of = agg in NUMERIC_OF_AGGS or agg == "distinct"
    if takes_of and of is None:
        raise fail(path, f"{agg} needs 'of': the transaction column it aggregates")
    if not takes_of and of is not None:
        raise fail(f"{path}.of", f"{agg} takes no 'of'")
    if of is not None:
        if not isinstance(of, str) or not _COLUMN.match(of):
            raise fail(f"{path}.of", f"{of!r} is not a column name")
        if agg in NUMERIC_OF_AGGS and of in _NON_NUMERIC:
            raise fail(f"{path}.of", f"{agg} needs a numeric column; {of!r} is not numeric")
    window = window_text(width)
    description = _description(entry, path, fail, _default_description(key, window, agg, of))
    return Feature(
        name=name,
        kind="count" if agg in COUNT_AGGS else "aggregate",
        description=description,
        history=True,
        key=key,
        window_us=width,
        agg=agg,
        of=of,
    )
