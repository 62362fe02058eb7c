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
        min_validation_days, min_test_days: How short validation and test may become when the mature,
            warmed-up history cannot hold the requested lengths (see :func:`plan_windows`); equal to
            the requested lengths, the windows are never shortened.
    """

    train_days: int
    validation_days: int
    test_days: int
    warmup_days: int
    min_train_days: int
    min_validation_days: int = 7
    min_test_days: int = 7

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

    def days(self) -> dict[str, int]:
        """Split name -> its length in whole days."""
        return {name: (end - start).days for name, (start, end) in self.splits().items()}

    def shortened(self) -> str | None:
        """What the planning shortened to fit the mature history, as a sentence; None when nothing was."""
        if self.design is None:
            return None
        days = self.days()
        asked = {"validation": self.design.validation_days, "test": self.design.test_days}
        cut = [f"{name} {asked[name]} -> {days[name]} days" for name in asked if days[name] < asked[name]]
        if not cut:
            return None
        return (
            f"{', '.join(cut)}: the mature, warmed-up history could not hold "
            f"{self.design.min_train_days} training days after the requested windows, so validation and test were "
            f"shortened in proportion (not below --min-validation-days {self.design.min_validation_days} / "
            f"--min-test-days {self.design.min_test_days})"
        )

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
            **({"shortened": shortened} if (shortened := self.shortened()) else {}),
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
    min_validation_days: int | None = None,
    min_test_days: int | None = None,
) -> TrainingWindows:
    """Places the windows as late as mature labels allow.

    The test window ends at the label cutoff (as_of minus the horizon, floored to midnight: windows
    are whole days, so a horizon in hours or an as_of after midnight moves the cutoff back, never
    forward) or at the end of the data if that is earlier. Validation and train precede it back to
    back. Training never starts within ``warmup_days`` of the first transaction, where history
    features are truncated by the start of the data rather than by the user's real history. The
    windows carry the design they were planned with.

    Early in a data set's life (a young world, a long maturity horizon) the mature, warmed-up history
    may not hold the requested validation and test windows plus ``min_train_days`` of training. Then
    validation and test are shortened in proportion to their requested lengths, not below
    ``min_validation_days`` / ``min_test_days`` (None: the requested lengths, i.e. never shortened),
    until training has ``min_train_days``; :meth:`TrainingWindows.shortened` says so. The gates still
    judge what the shorter windows hold (enough frauds per window, label completeness).

    Raises:
        ValueError: If ``train_days`` is below ``min_train_days``, a minimum exceeds its window, or the
            mature, warmed-up history leaves fewer than ``min_train_days`` training days even with the
            shortest windows allowed; the message names the settings and the days available.
    """
    for name, value in {"train_days": train_days, "validation_days": validation_days, "test_days": test_days}.items():
        if value <= 0:
            raise ValueError(f"{name} must be positive, got {value}")
    min_validation_days = validation_days if min_validation_days is None else min_validation_days
    min_test_days = test_days if min_test_days is None else min_test_days
    for name, low, high in (
        ("min_validation_days", min_validation_days, validation_days),
        ("min_test_days", min_test_days, test_days),
    ):
        if not 1 <= low <= high:
            raise ValueError(f"{name} must be from 1 to the window's {high} days, got {low}")
    label_cutoff = _floor_day(as_of - timedelta(days=horizon_days))
    test_end = min(label_cutoff, _floor_day(last_event_time) + timedelta(days=1))
    earliest_train = _floor_day(first_event_time) + timedelta(days=warmup_days)
    requested = (validation_days, test_days)
    validation_days, test_days = _fitted_lengths(
        (test_end - earliest_train).days, min_train_days, requested, (min_validation_days, min_test_days)
    )
    test_start = test_end - timedelta(days=test_days)
    validation_start = test_start - timedelta(days=validation_days)
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
            f"--validation-days; shortened to at most --min-test-days {min_test_days} / --min-validation-days "
            f"{min_validation_days}), {clipped}. Lower min_train_days to {max(available, 0)} or less, allow shorter "
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
        design=WindowDesign(train_days, *requested, warmup_days, min_train_days, min_validation_days, min_test_days),
    )


def _fitted_lengths(span_days: int, min_train_days: int, requested: tuple[int, int], minimum: tuple[int, int]):
    """Validation and test lengths that leave ``min_train_days`` of ``span_days``, shortened in proportion.

    The requested lengths when they fit (or when even the minimum lengths would not: the caller then
    reports the shortfall of the requested design).
    """
    room = span_days - min_train_days
    if sum(requested) <= room or sum(minimum) > room:
        return requested
    test = min(requested[1], max(minimum[1], round(room * requested[1] / sum(requested))))
    validation = min(requested[0], room - test)
    if validation < minimum[0]:
        validation, test = minimum[0], room - minimum[0]
    return validation, test


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
    min_validation_days: int | None = None,
    min_test_days: int | None = None,
) -> list[TrainingWindows]:
    """Prequential folds: the newest windows, then the same windows shifted back by their test length each time.

    Fold i is planned as if the run were ``i`` test windows earlier, so the test windows are consecutive
    and do not overlap, and every fold trains and tests out of time on labels mature at the real as_of.
    The newest fold may be shortened like :func:`plan_windows`; the older folds keep its lengths (a fold
    that no longer fits them ends the folds), so every fold is judged on windows of the same size.
    Folds stop early when the warmed-up history runs out.

    Returns:
        Up to ``n_folds`` windows, newest first (at least one).

    Raises:
        ValueError: If not even the newest fold fits.
    """
    newest = plan_windows(
        as_of,
        horizon_days,
        first_event_time,
        last_event_time,
        train_days,
        validation_days,
        test_days,
        warmup_days,
        min_train_days,
        min_validation_days,
        min_test_days,
    )
    folds = [newest]
    lengths = newest.days()
    for i in range(1, n_folds):
        shift = timedelta(days=i * lengths["test"])
        try:
            planned = plan_windows(
                as_of - shift,
                horizon_days,
                first_event_time,
                last_event_time - shift,
                train_days,
                lengths["validation"],
                lengths["test"],
                warmup_days,
                min_train_days,
            )
        except ValueError:
            break
        planned = replace(planned, design=newest.design)
        folds.append(replace(planned, as_of=as_of, label_cutoff=_floor_day(as_of - timedelta(days=horizon_days))))
    return folds
