"""What a device reports about itself in its retained status reaches its health page, and stays
there through offline and online transitions: the real edge agent and the real firmware (unix
port) publish their own statuses, last wills included, to a production-mode collector."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.collector.auth.stack import COLLECTOR_USER, Stack
from tests.edge.agent_process import spool_snapshot, start_agent
from tests.firmware.board import UnixBoard
from tests.firmware.conftest import board_config
from tests.support.mqtt import TestClient
from tests.support.net import free_port, wait_for
from thermowatch.firmware_cli import build_bundle


def _statuses(stack: Stack, device_id: str) -> TestClient:
    """Records every status the broker delivers for the device, as the collector sees them (on
    the collectors' listener where the broker has one)."""
    port = getattr(stack.broker, "collector_port", None) or stack.broker.port
    watcher = TestClient(port, username=COLLECTOR_USER, password=stack.collector_password)
    watcher.subscribe(f"tw/v1/{device_id}/status")
    return watcher


def _report(stack: Stack, device_id: str) -> dict[str, Any] | None:
    with stack.admin() as admin:
        report: dict[str, Any] | None = admin.get(f"/api/v1/devices/{device_id}/health").json()[
            "report"
        ]
    return report


def _wait_report(stack: Stack, device_id: str, what: str, check: Any) -> dict[str, Any]:
    def ready() -> dict[str, Any] | None:
        report = _report(stack, device_id)
        return report if report is not None and check(report) else None

    return wait_for(ready, 30, what=what)


def test_a_gateway_s_spool_and_drop_counts_survive_its_offline_status_and_restarts(
    stack: Stack, tmp_path: Path
) -> None:
    device = "gw-report"
    bundle = stack.provision(device, stack.new_home("Gateway"))
    spool = tmp_path / "spool.db"
    login = {
        "device_id": device,
        "mqtt_username": bundle["mqtt"]["username"],
        "mqtt_password": bundle["mqtt"]["password"],
        "sample_period_s": 0.1,
        "shutdown_drain_s": 0.5,
    }
    # First without a broker, with a short age limit, so the spool drops readings (and keeps
    # count of them across restarts).
    offline = start_agent(
        spool, free_port(), simulate=1, spool_max_age_s=0.3, name="edge-offline", **login
    )
    try:
        wait_for(lambda: spool_snapshot(spool)["dropped"] > 0, 30, what="readings dropped")
    finally:
        offline.stop()
    watcher = _statuses(stack, device)
    agent = start_agent(spool, stack.broker.port, simulate=1, **login)
    try:
        # Online at once with its boot, then its periodic status with the counts.
        online = _wait_report(
            stack, device, "the counts", lambda r: r["online"] and r["dropped"] is not None
        )
        assert online["dropped"] > 0 and online["spool"] is not None
        agent.stop()  # its last periodic status, then "offline" with its boot id
        report = _wait_report(stack, device, "offline", lambda r: r["online"] is False)
        sent = [json.loads(p) for p in watcher.received()]
        assert sent[-1]["state"] == "offline" and sent[-1]["boot"] == online["boot"]
        last = [s for s in sent if "dropped" in s][-1]
        assert (report["dropped"], report["spool"]) == (last["dropped"], last["spool"])
        assert report["boot"] == online["boot"]

        # A new boot: online at once without counts, the counts following with its status; then
        # the process dies and the broker publishes its last will.
        agent = start_agent(spool, stack.broker.port, simulate=1, **login)
        again = _wait_report(stack, device, "the new boot", lambda r: r["boot"] != online["boot"])
        assert again["dropped"] >= report["dropped"]
        again = _wait_report(stack, device, "online again", lambda r: r["online"])
        agent.kill()
        after = _wait_report(stack, device, "the last will", lambda r: r["online"] is False)
        sent = [json.loads(p) for p in watcher.received()]
        assert sent[-1] == {"v": 1, "state": "offline", "boot": again["boot"]}
        assert after["dropped"] >= again["dropped"] > 0 and after["spool"] is not None
    finally:
        agent.kill()
        watcher.close()


def test_a_board_s_boot_and_firmware_survive_its_last_will(
    stack: Stack, tmp_path: Path, micropython_bin: str
) -> None:
    device = "fw-report"
    bundle = stack.provision(device, stack.new_home("Board"))
    config = board_config(
        device_id=device,
        mqtt_port=stack.broker.port,
        mqtt_username=bundle["mqtt"]["username"],
        mqtt_password=bundle["mqtt"]["password"],
    )
    watcher = _statuses(stack, device)
    board = UnixBoard(
        micropython_bin, build_bundle("unix", tmp_path / "dist"), tmp_path / "b", config
    )
    board.start()
    try:
        online = _wait_report(stack, device, "the board online", lambda r: r["online"])
        assert online["boot"] and online["fw"]
        board.kill()
        after = _wait_report(stack, device, "the last will", lambda r: r["online"] is False)
    finally:
        board.kill()
        watcher.close()
    assert json.loads(watcher.received()[-1]) == {"v": 1, "state": "offline"}
    assert (after["boot"], after["fw"]) == (online["boot"], online["fw"])
    assert after["reported_at"] == online["reported_at"]  # the will changed nothing it reported


def test_hostile_statuses_leave_the_collector_s_presence_listener_running(stack: Stack) -> None:
    """Status payloads that broke the parser (deep nesting, huge integers) or would show people
    absurd counts are ignored; the device's next real status is still recorded."""
    device = "st-hostile"
    bundle = stack.provision(device, stack.new_home("Hostile status"))
    client = TestClient(
        stack.broker.port,
        client_id=device,
        username=bundle["mqtt"]["username"],
        password=bundle["mqtt"]["password"],
    )
    topic = f"tw/v1/{device}/status"
    hostile = [
        b"[" * 100_000,
        b'{"state": "online", "x": ' + b"[" * 50_000 + b"]" * 50_000 + b"}",
        b'{"state": "online", "dropped": ' + b"9" * 5000 + b"}",
        b'{"state": "online", "dropped": ' + str(2**70).encode() + b', "spool": -5}',
        b'{"state": "online", "boot": ["x"], "fw": {"a": 1}}',
        b"\xff\xfe\x00",
    ]
    client.publish_all([(topic, body) for body in hostile])
    client.publish_all([(topic, b'{"state": "online", "dropped": 7, "spool": 3, "boot": "b9"}')])
    report = _wait_report(stack, device, "the real status", lambda r: r["dropped"] == 7)
    assert (report["spool"], report["boot"], report["online"]) == (3, "b9", True)
    client.client.disconnect()


def test_a_status_for_an_unknown_device_creates_no_row(stack: Stack) -> None:
    import psycopg

    from collector.alerts.presence import _UPSERT

    with psycopg.connect(stack.database_url, autocommit=True) as conn:
        conn.execute(_UPSERT, {"d": "never-provisioned", "s": "online", "r": None})
        rows = conn.execute(
            "SELECT count(*) FROM device_presence WHERE device_id = 'never-provisioned'"
        ).fetchone()
    assert rows == (0,)
