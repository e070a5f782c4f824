"""Signs of life for long jobs whose output is not a terminal: a log line at a steady interval (stdlib only).

A progress bar on a terminal redraws itself; in a log file or a pipe it is noise, so the commands turn it off
there (`cli._no_bars`), and a job could then say nothing for minutes. `ProgressLog` puts one line on a logger
every `interval_s` seconds (30 by default) while the count moves: how far (and of how many), how fast, and
when it should end. `train` (a Trainer callback, `training.progress`), `score` and `data-stats` use it.

    training: step 94/1,504 (6%), 0.2 steps/s, ETA 1h 57m
    scoring news.csv (file 1/1): 120,000 rows, 730 rows/s, 2m 44s so far
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

INTERVAL_S = 30.0


def monotonic() -> float:
    """The default clock of `ProgressLog`: seconds on a monotonic clock."""
    return time.monotonic()


def format_duration(seconds: float) -> str:
    """`seconds` as "45s", "2m 44s" or "1h 57m"."""
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {secs:02d}s" if minutes else f"{secs}s"


def format_rate(per_second: float) -> str:
    """A rate with about three significant digits, grouped from 1,000 up: 0.123, 12.3, 730, 12,345."""
    return f"{per_second:,.0f}" if per_second >= 100 else f"{per_second:.3g}"


class ProgressLog:
    """Log how a counted job goes, at most once every `interval_s` seconds (at INFO on `logger`).

    Call `update` with the count done so far as often as convenient: it costs a clock read until a line is due.
    The rate counts only what this object has seen done (from `start`), so a resumed job's ETA is not
    flattered by the work of an earlier process.

    Args:
        logger: where the lines go.
        what: what the job is, the start of each line ("training", "scoring news.csv").
        unit: the counted thing, singular ("step", "row", "sentence"; an "s" makes it plural).
        total: the count at the end; None when not known (the line then says how long it has run, not
            the share done or the ETA).
        start: the count already done when this job (process) began.
        interval_s: seconds between lines; the first comes `interval_s` after the start.
        clock: seconds on a monotonic clock; default: `monotonic` (tests pass or patch in a fake one).
    """

    def __init__(
        self,
        logger: logging.Logger,
        what: str,
        unit: str,
        total: int | None = None,
        start: int = 0,
        interval_s: float = INTERVAL_S,
        clock: Callable[[], float] | None = None,
    ) -> None:
        if interval_s <= 0:
            raise ValueError(f"interval_s must be > 0 seconds, got {interval_s!r}.")
        self.logger, self.what, self.unit, self.total, self.start = logger, what, unit, total, start
        self.interval_s, self.clock = interval_s, clock or monotonic
        self.started = self.last = self.clock()

    def line(self, done: int, now: float) -> str:
        """The progress line for `done` at time `now` (see the module's examples)."""
        elapsed = now - self.started
        rate = (done - self.start) / elapsed if elapsed > 0 else 0.0
        speed = f"{format_rate(rate)} {self.unit}s/s"
        if self.total is None:
            return f"{self.what}: {done:,} {self.unit}s, {speed}, {format_duration(elapsed)} so far"
        share = f"{done / self.total:.0%}" if self.total else "100%"
        eta = format_duration((self.total - done) / rate) if rate > 0 else "unknown"
        return f"{self.what}: {self.unit} {done:,}/{self.total:,} ({share}), {speed}, ETA {eta}"

    def update(self, done: int) -> bool:
        """Note that `done` units are done; log a line if `interval_s` has passed since the last one.

        Args:
            done: the count done so far (not an increment).

        Returns:
            Whether a line was logged.
        """
        now = self.clock()
        if now - self.last < self.interval_s:
            return False
        self.last = now
        self.logger.info("%s", self.line(done, now))
        return True
