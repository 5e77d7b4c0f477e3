"""Rule validation and resolution, messages, the forecaster, quiet hours and backoff: the parts
that need no database."""

from __future__ import annotations

import json
import math
import random
from datetime import UTC, datetime
from datetime import time as dtime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from collector.alerts import messages
from collector.alerts.forecast import ArForecaster, ResidualAnomalyDetector
from collector.alerts.messages import Subject
from collector.alerts.rules import Kind, Rule, RuleError, applicable, validate_params
from collector.notify.base import Delivery, validate_config
from collector.notify.outbox import OutboxDrainer, quiet_until
from thermowatch.cli import app


def _rule(rule_id: int, name: str, **scope: object) -> Rule:
    return Rule(rule_id, name, Kind.threshold, {"above_c": 1.0}, **scope)  # type: ignore[arg-type]


def test_params_get_defaults_and_bad_ones_are_refused_with_a_reason() -> None:
    params = validate_params("threshold", {"above_c": 8})
    assert params["hysteresis_c"] == 0.5 and params["for_s"] == 60.0
    with pytest.raises(RuleError, match="below_c must be lower than above_c"):
        validate_params("threshold", {"above_c": 1, "below_c": 5})
    with pytest.raises(RuleError, match="unknown rule kind"):
        validate_params("humidity", {})
    with pytest.raises(RuleError, match="surprise"):
        validate_params("stale", {"surprise": 1})


def test_the_most_specific_rule_of_a_name_applies_and_a_disabled_one_switches_it_off() -> None:
    rules = [
        _rule(1, "warm"),
        _rule(2, "warm", home_id=7),
        _rule(3, "warm", home_id=7, device_id="d1"),
        _rule(4, "warm", home_id=7, device_id="d1", sensor_id="s2", enabled=False),
        _rule(5, "cold"),
    ]
    assert [r.id for r in applicable(rules, "d1", "s1", 7)] == [3, 5]
    assert [r.id for r in applicable(rules, "d1", "s2", 7)] == [5]
    assert [r.id for r in applicable(rules, "d9", "s1", 7)] == [2, 5]
    assert [r.id for r in applicable(rules, "d9", "s1", 8)] == [1, 5]


def test_messages_read_as_plain_language() -> None:
    where = Subject("d1", "s1", "Freezer", "Garage")
    text = messages.firing(
        Kind.threshold,
        where,
        value=-4.2,
        observed=-4.2,
        limit=-10.0,
        direction="above",
        for_s=900,
    )
    assert text == "Freezer in Garage is -4.2 °C, above -10 °C for 15 min"
    assert (
        messages.firing(
            Kind.offline,
            Subject("d1", ""),
            value=None,
            observed=None,
            limit=None,
            direction="",
            for_s=7200,
        )
        == "d1 is offline: nothing heard for 2 h"
    )
    assert messages.resolved(Kind.stale, where, value=None, lasted_s=45) == (
        "Resolved: Freezer in Garage is reporting again (silent for 45 s)"
    )


def test_the_forecaster_learns_an_ar_process_and_its_state_survives_json() -> None:
    rng = random.Random(1)
    ar = ArForecaster(order=2, forgetting=1.0)
    x1, x2 = 0.0, 0.0
    for _ in range(500):
        x = 5.0 + 1.5 * x1 - 0.7 * x2 + rng.gauss(0, 0.01)
        ar.update(x)
        x2, x1 = x1, x
    assert ar.theta[1:].tolist() == pytest.approx([1.5, -0.7], abs=0.05)
    copy = ArForecaster(order=2, forgetting=1.0)
    assert copy.set_state(json.loads(json.dumps(ar.get_state())))
    assert copy.predict() == pytest.approx(ar.predict())
    assert not copy.set_state({"theta": [1, 2], "p": [], "h": []})  # corrupt: refused


def test_the_residual_detector_ignores_a_fast_cycle_but_flags_a_jump() -> None:
    det = ResidualAnomalyDetector(warmup=20)
    flagged = [det.update(20 + 3 * math.sin(t / 60))[1] for t in range(600)]
    assert not any(flagged[50:])
    assert det.update(30.0)[1]


def test_quiet_hours_wrap_midnight_in_the_targets_time_zone() -> None:
    start, end = dtime(22, 0), dtime(7, 0)
    # 23:30 in Berlin (winter, UTC+1) is quiet until 07:00 Berlin = 06:00 UTC.
    now = datetime(2026, 1, 10, 22, 30, tzinfo=UTC)
    assert quiet_until(now, start, end, "Europe/Berlin") == datetime(2026, 1, 11, 6, 0, tzinfo=UTC)
    assert (
        quiet_until(datetime(2026, 1, 10, 12, 0, tzinfo=UTC), start, end, "Europe/Berlin") is None
    )
    assert quiet_until(now, None, None, "UTC") is None


def test_backoff_doubles_up_to_its_cap() -> None:
    drainer = OutboxDrainer("postgresql://unused", backoff_base_s=2.0, backoff_max_s=60.0)
    delays = [drainer.backoff_s(n) for n in range(1, 8)]
    for n, delay in enumerate(delays, start=1):
        expected = min(2.0 * 2 ** (n - 1), 60.0)
        assert expected <= delay <= expected * 1.1


def test_grouped_deliveries_read_one_line_per_alert() -> None:
    items = [
        {"event": "firing", "severity": "critical", "message": "Freezer in Garage is -4 °C"},
        {"event": "resolved", "severity": "warning", "message": "Resolved: Fridge is back"},
    ]
    d = Delivery("1-2", 1, "hook", 3, {}, items)
    assert d.title == "2 alert updates"
    assert d.text == (
        "ALERT [critical] Freezer in Garage is -4 °C\nRESOLVED [warning] Resolved: Fridge is back"
    )


def test_target_configs_are_validated_per_channel() -> None:
    assert validate_config("webhook", {"url": "https://example.org/h"})["timeout_s"] == 10.0
    with pytest.raises(ValueError, match="url"):
        validate_config("webhook", {"url": "ftp://x"})
    with pytest.raises(ValueError, match="to"):
        validate_config("smtp", {"host": "mail", "sender": "a@b", "to": []})
    with pytest.raises(ValueError, match="unknown notifier"):
        validate_config("pager", {})


def test_replay_backtests_rules_from_a_file(tmp_path: Path) -> None:
    rules = tmp_path / "rules.json"
    rules.write_text(
        json.dumps(
            [
                {"name": "warm", "kind": "threshold", "params": {"above_c": -10, "for_s": 600}},
                {"name": "quiet", "kind": "stale", "params": {"expected_interval_s": 60}},
            ]
        )
    )
    lines = ["time,sensor_id,value"]
    for i in range(240):
        if 180 <= i < 200:
            continue  # the board was silent for 20 minutes
        value = -6.0 if 100 <= i < 130 else -18.0
        lines.append(f"{1_790_000_000 + i * 60},freezer,{value}")
    data = tmp_path / "garage.csv"
    data.write_text("\n".join(lines) + "\n")
    result = CliRunner().invoke(app, ["replay", "--no-anomalies", "--rules", str(rules), str(data)])
    assert result.exit_code == 0, result.output
    assert "2 alerts would have been raised" in result.output
    assert "freezer in garage is -6 °C, above -10 °C for 10 min" in result.output
    assert "freezer in garage has not reported for 3 min" in result.output
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"name": "x", "kind": "threshold", "params": {}}]))
    result = CliRunner().invoke(app, ["replay", "--rules", str(bad), str(data)])
    assert result.exit_code != 0
    assert "above_c or below_c" in result.output


def test_only_public_addresses_count_as_public_destinations() -> None:
    from collector.notify.destinations import is_public, target_host

    assert target_host("webhook", {"url": "https://hooks.example.org:8443/x"}) == (
        "hooks.example.org"
    )
    assert target_host("smtp", {"host": "mail.example.org"}) == "mail.example.org"
    for private in ("127.0.0.1", "10.1.2.3", "192.168.1.10", "169.254.169.254", "::1", None):
        assert not is_public(private), private
    assert is_public("8.8.8.8")
    assert not is_public("no-such-host.invalid")
