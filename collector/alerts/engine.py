"""Rule evaluation on committed readings.

The group-commit writer calls :meth:`AlertEngine.on_commit` after each commit; the engine only
queues the group and evaluates it on its own thread, so ingest never waits for alerting. The
queue is a :class:`~collector.alerts.backlog.Backlog`: bounded, and served in rounds that give
every home with waiting work a budget of rule evaluations, so one home's flood or expensive rules
cannot delay another home's alerts. For each
(rule, sensor) with new data it locks the state row (``SELECT ... FOR UPDATE``), feeds the
readings newer than the state in measurement-time order to the rule's evaluator and applies the
transitions to the alert, all in one transaction. Several collector instances can therefore
evaluate the same sensor (the shared MQTT subscription splits a device's batches between them):
they take turns on the row, and each reading is evaluated once.

A reading at or before the time the state has already reached (a re-delivery, or a batch that
lost the race against a newer one from the same device) is stored by the writer but not fed to
the evaluators again; it is counted in ``thermowatch_alert_late_readings_total``.
"""

from __future__ import annotations

import json
import logging
import statistics
import threading
import time
from collections import Counter as Tally
from collections import defaultdict
from collections.abc import Callable, Iterable

import psycopg
from prometheus_client import Counter, Histogram

from collector.alerts import lifecycle
from collector.alerts.backlog import Backlog, device_of
from collector.alerts.catalog import Catalog
from collector.alerts.evaluate import ProbeFaultEvaluator, Sample, evaluator_for
from collector.alerts.lifecycle import Key, Lifecycle
from collector.alerts.rules import READING_KINDS, AnomalySource, Kind, Rule
from collector.db.connection import connect
from collector.ingest.work import Work

log = logging.getLogger(__name__)

LATE_READINGS = Counter(
    "thermowatch_alert_late_readings_total",
    "Readings older than what their rule state had reached; stored but not evaluated again",
)
EVALUATED = Counter("thermowatch_alert_samples_evaluated_total", "Samples fed to alert rules")
EVAL_SECONDS = Histogram(
    "thermowatch_alert_evaluation_seconds",
    "Time to evaluate one round of committed groups",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)

# The cost model of a round, in evaluations (one sample through one threshold rule, about 2 µs).
# A rule's state row is locked, read and written once per round however many samples it is fed,
# which costs about as much as 150 samples; the server-side forecaster (anomaly rules with source
# server or both) costs about 25 per sample. Timed with AlertEngine.process on a 2-core machine.
STATE_COST = 150.0
FORECAST_COST = 25.0

# How many of the latest gaps between batches are remembered to learn a sensor's rhythm.
ARRIVAL_GAPS_KEPT = 5
_MIN_GAP_S = 1.0  # batches closer than this are one burst, not a rhythm

_LOCK_STATES = """
SELECT s.rule_id, s.device_id, s.sensor_id, s.state, s.last_time_ms
FROM alert_state s
JOIN unnest(%s::bigint[], %s::text[], %s::text[]) AS k(r, d, se)
  ON s.rule_id = k.r AND s.device_id = k.d AND s.sensor_id = k.se
ORDER BY s.rule_id, s.device_id, s.sensor_id
FOR UPDATE OF s
"""
_SAVE_STATES = """
UPDATE alert_state AS s SET state = u.st, last_time_ms = u.t, updated_at = now()
FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::jsonb[], %s::bigint[]) AS u(r, d, se, st, t)
WHERE s.rule_id = u.r AND s.device_id = u.d AND s.sensor_id = u.se
"""


def ensure_states(cur: psycopg.Cursor, keys: list[Key]) -> dict[Key, tuple[dict, int]]:
    """Create missing state rows, then lock all of them in one order (no deadlocks between
    instances) and return ``{key: (state, last_time_ms)}``."""
    cols = ([k[0] for k in keys], [k[1] for k in keys], [k[2] for k in keys])
    cur.execute(
        "INSERT INTO alert_state (rule_id, device_id, sensor_id) "
        "SELECT * FROM unnest(%s::bigint[], %s::text[], %s::text[]) ON CONFLICT DO NOTHING",
        cols,
    )
    rows = cur.execute(_LOCK_STATES, cols).fetchall()
    return {(r[0], r[1], r[2]): (r[3] or {}, r[4]) for r in rows}


def save_states(cur: psycopg.Cursor, updates: list[tuple[Key, dict, int]]) -> None:
    if not updates:
        return
    cur.execute(
        _SAVE_STATES,
        (
            [u[0][0] for u in updates],
            [u[0][1] for u in updates],
            [u[0][2] for u in updates],
            [json.dumps(u[1]) for u in updates],
            [u[2] for u in updates],
        ),
    )


def learned_gap_s(state: dict) -> float | None:
    gaps = state.get("gaps") or []
    return float(statistics.median(gaps)) if gaps else None


def note_arrival(state: dict, now_ms: int) -> dict:
    """Remember when data arrived and the recent gaps between arrivals (for the stale sweep)."""
    last = state.get("arrival_ms")
    gaps = list(state.get("gaps") or [])
    if last is not None:
        gap = (now_ms - int(last)) / 1000.0
        if gap >= _MIN_GAP_S:
            gaps = [*gaps, gap][-ARRIVAL_GAPS_KEPT:]
    return dict(state, arrival_ms=now_ms, gaps=gaps)


def _sample_cost(rule: Rule) -> float:
    forecasts = rule.kind is Kind.anomaly and rule.params.get("source") != AnomalySource.edge
    return FORECAST_COST if forecasts else 1.0


class AlertEngine:
    """Evaluates reading-driven rules on committed groups (see module docstring)."""

    def __init__(
        self,
        database_url: str,
        *,
        live_window_s: float = 300.0,
        rule_cache_s: float = 2.0,
        clock: Callable[[], float] = time.time,
        on_changes: Callable[[], None] | None = None,
        max_backlog_samples: int = 100_000,
        home_evaluations_per_round: float = 25_000,
    ) -> None:
        self._url = database_url
        self._on_changes = on_changes  # e.g. wake the outbox drainer
        self.live_window_ms = int(live_window_s * 1000)
        self.catalog = Catalog(ttl_s=rule_cache_s)
        self._clock = clock
        self.home_evaluations_per_round = home_evaluations_per_round
        self.backlog = Backlog(max_samples=max_backlog_samples, home_of=self.catalog.known_home)
        self._stop = threading.Event()
        self._drain_until = 0.0
        self._thread = threading.Thread(target=self._run, name="alert-engine", daemon=True)
        self._conn: psycopg.Connection | None = None

    # -- writer side -----------------------------------------------------------------------------

    def on_commit(self, group: list[Work]) -> None:
        """The writer's commit listener: hand the group over and return at once (shedding the
        heaviest home's oldest work if the backlog is full)."""
        self.backlog.put(group)

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Evaluate what is waiting for most of ``timeout_s``, then drop the rest (counted in
        ``thermowatch_alert_shed_total{reason="shutdown"}``): their readings are stored."""
        self._drain_until = time.monotonic() + timeout_s * 0.8
        self._stop.set()
        self._thread.join(timeout_s)
        if not self._thread.is_alive() and self._conn is not None:
            self._conn.close()

    def _stopping(self) -> bool:
        if not self._stop.is_set():
            return False
        if self.backlog.samples == 0:
            return True
        if time.monotonic() < self._drain_until:
            return False
        dropped = self.backlog.drop_all("shutdown")
        log.warning("stopping: %d committed samples left unevaluated", dropped)
        return True

    def _run(self) -> None:
        while not self._stopping():
            if not self.backlog.wait(0.1):
                continue
            delay = 0.1
            works: list[Work] | None = None
            while True:
                try:
                    started = time.perf_counter()
                    if works is None:
                        works = self.take_round()
                    if self.process(works) and self._on_changes is not None:
                        self._on_changes()
                    EVAL_SECONDS.observe(time.perf_counter() - started)
                    break
                except psycopg.Error as exc:
                    self._close()
                    if self._stop.is_set():  # no database to drain into: stop now
                        log.warning("alert evaluation failed while stopping: %s", exc)
                        self.backlog.drop_all("shutdown")
                        break
                    log.warning("alert evaluation failed, retrying in %.1fs: %s", delay, exc)
                    self._stop.wait(delay)
                    delay = min(delay * 2, 5.0)
                except Exception:  # a bug in one rule must not stop alerting for everyone
                    log.exception("alert evaluation failed; skipping this round")
                    self._close()
                    break

    def _close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None

    def _connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            # Autocommit outside the evaluation transaction: catalog look-ups hold no locks.
            self._conn = connect(self._url, autocommit=True)
        return self._conn

    # -- evaluation ------------------------------------------------------------------------------

    def take_round(self) -> list[Work]:
        """The work of one round: each home with waiting work gets up to
        ``home_evaluations_per_round`` rule evaluations (see :class:`Backlog`)."""
        conn = self._connection()
        # Look-ups first, outside the backlog's lock: the cost estimate then needs no database.
        self.catalog.rules(conn)
        self.catalog.devices(conn, self.backlog.devices())
        return self.backlog.take(self.home_evaluations_per_round, self.cost)

    def run_round(self, *, now_ms: int | None = None) -> int:
        """Take one round from the backlog and evaluate it; returns the alert changes. Public for
        tests, which drive the rounds themselves with a fixed ``now_ms``."""
        return self.process(self.take_round(), now_ms=now_ms)

    def cost(self, work: Work) -> float:
        """Rule evaluations one committed batch asks for: each sample times the reading rules
        that apply to its sensor, plus each rule's state. Uses only cached look-ups."""
        device = device_of(work)
        if device is None:
            return 0.0
        home = self.catalog.known_home(device)
        home_id = home if isinstance(home, int) else None
        counts = Tally(r[1] for r in work.rows)
        if work.outcome.device_id is not None:
            counts.update(e.sensor_id for e in work.events)
        total = 0.0
        for sensor, n in counts.items():
            rules = [
                r for r in self.catalog.match(device, sensor, home_id) if r.kind in READING_KINDS
            ]
            total += n * max(1.0, sum(map(_sample_cost, rules))) + STATE_COST * len(rules)
        return total

    def process(self, works: Iterable[Work], *, now_ms: int | None = None) -> int:
        """Evaluate committed work; returns the number of alert changes. Public for tests,
        which pass a fixed ``now_ms``."""
        now_ms = int(self._clock() * 1000) if now_ms is None else now_ms
        conn = self._connection()
        catalog = self.catalog
        if not catalog.rules(conn):  # nothing to evaluate: skip the per-reading work entirely
            return 0
        samples: dict[tuple[str, str], list[Sample]] = defaultdict(list)
        for work in works:
            for row in work.rows:
                samples[(row[0], row[1])].append(Sample(row[2], row[3], row[5]))
            device = work.outcome.device_id
            if device is not None:
                for ev in work.events:
                    samples[(device, ev.sensor_id)].append(
                        Sample(ev.time_ms, ev.value, None, ev.kind)
                    )
        if not samples:
            return 0
        infos = catalog.devices(conn, {d for d, _ in samples})
        reading_work: dict[Key, tuple[Rule, list[Sample]]] = {}
        arrivals: dict[Key, Rule] = {}
        for (device, sensor), series in samples.items():
            home = infos[device].home_id
            for rule in catalog.applicable(conn, device, sensor, home):
                if rule.kind in READING_KINDS:
                    reading_work[(rule.id, device, sensor)] = (rule, series)
                elif rule.kind is Kind.stale:
                    arrivals[(rule.id, device, sensor)] = rule
                elif rule.kind is Kind.offline and rule.sensor_id is None:
                    arrivals[(rule.id, device, "")] = rule
        keys = sorted(set(reading_work) | set(arrivals))
        if not keys:
            return 0
        with conn.transaction(), conn.cursor() as cur:
            states = ensure_states(cur, keys)
            open_alerts = lifecycle.load_open(cur, list(reading_work))
            lc = Lifecycle(cur, now_ms=now_ms, live_window_ms=self.live_window_ms)
            updates: list[tuple[Key, dict, int]] = []
            for key in keys:
                state, last_ms = states.get(key, ({}, 0))
                if key in arrivals:
                    updates.append((key, note_arrival(state, now_ms), last_ms))
                    continue
                rule, series = reading_work[key]
                fresh = sorted(
                    (s for s in series if s.t_ms > last_ms),
                    key=lambda s: (s.t_ms, s.event is not None),
                )
                LATE_READINGS.inc(len(series) - len(fresh))
                if not fresh:
                    continue
                EVALUATED.inc(len(fresh))
                evaluator = evaluator_for(rule, state)
                transitions = evaluator.feed(fresh)
                latest = fresh[-1].t_ms
                alert = open_alerts.get(key)
                fault = evaluator.fault if isinstance(evaluator, ProbeFaultEvaluator) else None
                if transitions or (alert is not None and not alert.notified):
                    lc.apply(
                        rule,
                        key,
                        catalog.subject(conn, key[1], key[2]),
                        infos[key[1]].home_id,
                        transitions,
                        alert,
                        latest_ms=latest,
                        fault=fault,
                    )
                updates.append((key, evaluator.get_state(), latest))
            save_states(cur, updates)
        return lc.changes
