"""Out-of-time training, validation and test windows that only ever contain mature labels."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from datetime import datetime, timedelta


@dataclass(frozen=True)
class WindowDesign:
    """The lengths windows are planned with (what :func:`plan_windows` and :func:`rolling_windows` take).

    Attributes:
        train_days, validation_days, test_days: Requested window lengths in days (training may be
            shorter when the warm-up clips it).
        warmup_days: Days after the first transaction before training may start.
        min_train_days: Fewest training days accepted after the warm-up.
    """

    train_days: int
    validation_days: int
    test_days: int
    warmup_days: int
    min_train_days: int

    def label(self) -> str:
        """``train/validation/test`` days, e.g. ``49/14/21``."""
        return f"{self.train_days}/{self.validation_days}/{self.test_days}"


@dataclass(frozen=True)
class TrainingWindows:
    """Consecutive half-open windows [start, end) in time order: train, then validation, then test.

    Attributes:
        train_start, train_end, validation_start, validation_end, test_start, test_end: Boundaries.
        label_cutoff: as_of minus the maturity horizon; every window ends at or before it.
        as_of: The run's logical date.
        horizon_days: The maturity horizon the cutoff was derived from, in days (whole days or hours).
        design: The lengths the windows were planned with (None when read from an older bundle that
            did not record them).
    """

    train_start: datetime
    train_end: datetime
    validation_start: datetime
    validation_end: datetime
    test_start: datetime
    test_end: datetime
    label_cutoff: datetime
    as_of: datetime
    horizon_days: float
    design: WindowDesign | None = None

    def splits(self) -> dict[str, tuple[datetime, datetime]]:
        """Split name -> (start, end)."""
        return {
            "train": (self.train_start, self.train_end),
            "validation": (self.validation_start, self.validation_end),
            "test": (self.test_start, self.test_end),
        }

    def as_dict(self) -> dict:
        """The boundaries as ISO strings and the design as a plain dict, for metadata and the model card."""
        return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in asdict(self).items()}

    def to_metadata(self) -> dict:
        """The boundaries, cutoff and horizon for the Dagster UI."""
        return {
            **{
                f"{name}_{end}": f"{moment:%Y-%m-%d}"
                for name, window in self.splits().items()
                for end, moment in zip(("start", "end"), window)
            },
            "label_cutoff": self.label_cutoff.isoformat(),
            "horizon_days": self.horizon_days,
            **({"design": self.design.label(), **asdict(self.design)} if self.design else {}),
        }

    @classmethod
    def from_dict(cls, values: dict) -> TrainingWindows:
        """Inverse of :meth:`as_dict`; a dict without ``design`` (an older bundle) reads as design None."""
        known = {f.name for f in fields(cls)} - {"design"}
        design = values.get("design")
        return cls(
            **{k: (datetime.fromisoformat(v) if isinstance(v, str) else v) for k, v in values.items() if k in known},
            design=WindowDesign(**design) if design else None,
        )


def _floor_day(moment: datetime) -> datetime:
    return datetime(moment.year, moment.month, moment.day)


def plan_windows(
    as_of: datetime,
    horizon_days: float,
    first_event_time: datetime,
    last_event_time: datetime,
    train_days: int,
    validation_days: int,
    test_days: int,
    warmup_days: int = 30,
    min_train_days: int = 21,
) -> TrainingWindows:
    """Places the windows as late as mature labels allow.

    The test window ends at the label cutoff (as_of minus the horizon, floored to midnight: windows
    are whole days, so a horizon in hours or an as_of after midnight moves the cutoff back, never
    forward) or at the end of the data if that is earlier. Validation and train precede it back to
    back. Training never starts within ``warmup_days`` of the first transaction, where history
    features are truncated by the start of the data rather than by the user's real history. The
    windows carry the design they were planned with.

    Raises:
        ValueError: If ``train_days`` is below ``min_train_days``, or the mature, warmed-up history
            leaves fewer than ``min_train_days`` training days; the message names the settings and the
            days available.
    """
    for name, value in {"train_days": train_days, "validation_days": validation_days, "test_days": test_days}.items():
        if value <= 0:
            raise ValueError(f"{name} must be positive, got {value}")
    label_cutoff = _floor_day(as_of - timedelta(days=horizon_days))
    test_end = min(label_cutoff, _floor_day(last_event_time) + timedelta(days=1))
    test_start = test_end - timedelta(days=test_days)
    validation_start = test_start - timedelta(days=validation_days)
    earliest_train = _floor_day(first_event_time) + timedelta(days=warmup_days)
    train_start = max(validation_start - timedelta(days=train_days), earliest_train)
    if train_days < min_train_days:
        raise ValueError(
            f"train_days {train_days} is below min_train_days {min_train_days} (--train-days / --min-train-days): "
            f"no data can meet that; lower min_train_days to at most {train_days} or raise train_days"
        )
    available = (validation_start - train_start).days
    if available < min_train_days:
        clipped = (
            f"the {warmup_days}-day feature warm-up (warmup_days, the longest feature window) from the first "
            f"transaction {first_event_time:%Y-%m-%d} leaves training {train_start:%Y-%m-%d}..{validation_start:%Y-%m-%d}"
        )
        raise ValueError(
            f"min_train_days {min_train_days} (--min-train-days) not met: {available} training days available. "
            f"At as_of {as_of:%Y-%m-%d} with a {horizon_days:g}-day maturity horizon the labels are mature until "
            f"{label_cutoff:%Y-%m-%d}; after {test_days} test and {validation_days} validation days (--test-days, "
            f"--validation-days), {clipped}. Lower min_train_days to {max(available, 0)} or less, shorten the "
            f"test/validation windows, or run at a later as_of"
        )
    return TrainingWindows(
        train_start=train_start,
        train_end=validation_start,
        validation_start=validation_start,
        validation_end=test_start,
        test_start=test_start,
        test_end=test_end,
        label_cutoff=label_cutoff,
        as_of=as_of,
        horizon_days=horizon_days,
        design=WindowDesign(train_days, validation_days, test_days, warmup_days, min_train_days),
    )


def window_problems(windows: TrainingWindows) -> list[str]:
    """Everything wrong with a set of windows: overlaps, wrong order, or ends past the label cutoff."""
    problems = []
    ordered = list(windows.splits().items())
    for name, (start, end) in ordered:
        if start >= end:
            problems.append(f"{name} window is empty or reversed ({start} >= {end})")
        if end > windows.label_cutoff:
            problems.append(f"{name} window ends {end} after the label cutoff {windows.label_cutoff}")
    for (name_a, (_, end_a)), (name_b, (start_b, _)) in zip(ordered, ordered[1:]):
        if end_a > start_b:
            problems.append(f"{name_a} window overlaps {name_b} ({end_a} > {start_b})")
    expected_cutoff = _floor_day(windows.as_of - timedelta(days=windows.horizon_days))
    if windows.label_cutoff > expected_cutoff:
        problems.append(f"label cutoff {windows.label_cutoff} is later than as_of - horizon = {expected_cutoff}")
    return problems


def rolling_windows(
    as_of: datetime,
    horizon_days: float,
    first_event_time: datetime,
    last_event_time: datetime,
    n_folds: int,
    train_days: int,
    validation_days: int,
    test_days: int,
    warmup_days: int = 30,
    min_train_days: int = 21,
) -> list[TrainingWindows]:
    """Prequential folds: the newest windows, then the same windows shifted back by ``test_days`` each time.

    Fold i is planned as if the run were ``i * test_days`` earlier, so the test windows are consecutive
    and do not overlap, and every fold trains and tests out of time on labels mature at the real as_of.
    Folds stop early when the warmed-up history runs out.

    Returns:
        Up to ``n_folds`` windows, newest first (at least one).

    Raises:
        ValueError: If not even the newest fold fits.
    """
    folds = []
    for i in range(n_folds):
        shift = timedelta(days=i * test_days)
        try:
            planned = plan_windows(
                as_of - shift,
                horizon_days,
                first_event_time,
                last_event_time - shift,
                train_days,
                validation_days,
                test_days,
                warmup_days,
                min_train_days,
            )
        except ValueError:
            if not folds:
                raise
            break
        folds.append(replace(planned, as_of=as_of, label_cutoff=_floor_day(as_of - timedelta(days=horizon_days))))
    return folds
