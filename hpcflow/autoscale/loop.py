"""The autoscaler loop: an APScheduler BackgroundScheduler that ticks while holding the lease."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from hpcflow.autoscale import lease
from hpcflow.autoscale.report import TickReport
from hpcflow.autoscale.tick import tick
from hpcflow.config import Settings

log = logging.getLogger(__name__)
KINDS = ("slurm", "local", "aws")
# A loop ticking faster than this (hpcflow run: 0.25 s) backs off while its ticks find nothing
# to do, up to this gap: each tick reads the whole demand, and on a 2-core machine running
# thousands of short jobs those reads took about a tenth of a core from the jobs.
QUIET_GAP_SECONDS = 2.0


def lease_ttl(settings: Settings) -> float:
    """How long one lease lasts: a few intervals, and never less than a minute.

    Ticks renew it while they act (lease.Keeper), so it bounds failover after a crash, not the
    length of a tick.
    """
    return max(60.0, 3 * settings.autoscale_interval_seconds)


class LazySubmitters(Mapping[str, Any]):
    """Submitters built on first use, so a missing optional dependency only hides its kind."""

    def __init__(
        self, factory: Callable[[str], Any] | None = None, settings: Settings | None = None
    ) -> None:
        self.factory = factory
        self.settings = settings
        self.built: dict[str, Any] = {}
        self.failed: dict[str, str] = {}

    def _make(self, name: str) -> Any:
        if self.factory is not None:
            return self.factory(name)
        from hpcflow.autoscale.request import submitter_options
        from submitters import get_submitter

        options = submitter_options(name, self.settings) if self.settings else {}
        return get_submitter(name, **options)

    def __getitem__(self, name: str) -> Any:
        if name not in self.built and name not in self.failed:
            try:
                self.built[name] = self._make(name)
            except Exception as exc:  # e.g. boto3 not installed: that kind stays unavailable
                self.failed[name] = f"{type(exc).__name__}: {exc}"
                log.warning("submitter %s unavailable: %s", name, self.failed[name])
        if name not in self.built:
            raise KeyError(name)
        return self.built[name]

    def __iter__(self) -> Iterator[str]:
        return iter(k for k in KINDS if k in self)

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __contains__(self, name: object) -> bool:
        try:
            self[str(name)]
        except KeyError:
            return False
        return True


def run_once(
    sessions: sessionmaker[Session],
    holder: str,
    submitters: Mapping[str, Any],
    settings: Settings,
    now: float | None = None,
) -> TickReport | None:
    """Take the lease and tick; None when another loop holds the lease."""
    now = time.time() if now is None else now
    ttl = lease_ttl(settings)
    if not lease.acquire(sessions, holder, now, ttl):
        return None
    # The tick's own clock (tests pass a fixed `now`) moving on with real time.
    start = time.monotonic()
    keeper = lease.Keeper(sessions, holder, ttl, clock=lambda: now + time.monotonic() - start)
    session = sessions()
    try:
        return tick(session, now, submitters, settings, keep=keeper.keep)
    finally:
        session.close()


class Autoscaler:
    """One loop per server process; nothing starts until start()."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        settings: Settings,
        submitters: Mapping[str, Any] | None = None,
    ) -> None:
        self.sessions = sessions
        self.settings = settings
        self.submitters = (
            submitters if submitters is not None else LazySubmitters(settings=settings)
        )
        self.holder = lease.new_holder()
        self.scheduler: Any = None
        self.last: TickReport | None = None
        interval = max(settings.autoscale_interval_seconds, 1e-3)
        self._max_skip = max(0, int(QUIET_GAP_SECONDS / interval) - 1)
        self._quiet = 0  # ticks to skip after the next quiet tick (doubles, reset by action)
        self._skip = 0  # ticks still to skip

    def run(self) -> None:
        """One scheduled tick; errors are logged, never raised into APScheduler."""
        if self._skip > 0:
            self._skip -= 1
            return
        try:
            report = run_once(self.sessions, self.holder, self.submitters, self.settings)
        except Exception:
            log.exception("autoscaler tick failed")
            return
        quiet = report is not None and report.is_quiet
        self._quiet = min(max(1, 2 * self._quiet), self._max_skip) if quiet else 0
        self._skip = self._quiet
        if report is not None:
            self.last = report
            if not report.is_quiet:
                log.info(
                    "autoscale: launched %s, released %d, lost nodes %s, errors %s (%.3f s)",
                    report.launched,
                    len(report.canceled),
                    report.lost_nodes,
                    report.errors,
                    report.seconds,
                )

    def start(self) -> None:
        """Start ticking every autoscale_interval_seconds (the first tick right away)."""
        from datetime import datetime

        from apscheduler.schedulers.background import BackgroundScheduler
        from apscheduler.triggers.interval import IntervalTrigger

        self.scheduler = BackgroundScheduler(daemon=True)
        self.scheduler.add_job(
            self.run,
            IntervalTrigger(seconds=self.settings.autoscale_interval_seconds),
            id="autoscale",
            max_instances=1,
            coalesce=True,
            next_run_time=datetime.now().astimezone(),
        )
        self.scheduler.start()

    def stop(self) -> None:
        """Stop ticking and hand the lease back."""
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=True)
            self.scheduler = None
            try:
                lease.release(self.sessions, self.holder)
            except Exception:
                log.exception("could not release the autoscaler lease")


def start(app: Any) -> Autoscaler:
    """Start the loop for a Flask app built by create_app (stored in app.extensions)."""
    import atexit

    state = app.extensions["hpcflow"]
    scaler = Autoscaler(state.sessions, state.settings)
    app.extensions["hpcflow_autoscaler"] = scaler
    scaler.start()
    atexit.register(scaler.stop)
    return scaler
