"""What ``thermowatch edge status`` shows: read from the spool the running agent writes."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from edge.spool import Spool


def read_status(spool_path: Path) -> dict[str, Any]:
    """Spool depth, drops, last ack and the agent's last published per-sensor state."""
    if not spool_path.exists():
        raise FileNotFoundError(f"no spool at {spool_path}")
    # A fresh connection sees the latest committed state; WAL lets it read while the agent writes.
    spool = Spool(spool_path)
    try:
        stats = spool.stats()
        agent = spool.get_meta("status") or {}
    except sqlite3.Error as exc:
        raise RuntimeError(f"cannot read the spool: {exc}") from None
    finally:
        spool.close()
    return {
        **stats,
        "agent": {k: v for k, v in agent.items() if not k.startswith("spool")},
    }


def format_status(status: dict[str, Any]) -> str:
    """A short human-readable summary."""
    lines = [
        f"spool: {status['spool_readings']} readings ({status['spool_pending']} not yet sent), "
        f"{status['spool_events']} events, {status['unacked_batches']} batches awaiting ack",
        f"dropped (spool full or too old): {status['dropped_total']}",
    ]
    ack = status.get("last_ack")
    lines.append(f"last ack: seq {ack['seq']} at {ack['time_ms']} ms" if ack else "last ack: none")
    agent = status.get("agent") or {}
    if agent:
        lines.append(
            f"agent: device {agent.get('device_id')} boot {agent.get('boot')}"
            f" pid {agent.get('pid')}"
            f", {'connected' if agent.get('connected') else 'disconnected'}"
            f", clock {'synchronised' if agent.get('clock_synced') else 'NOT synchronised'}"
            f", status written at {agent.get('time_ms')} ms"
        )
        for sid, state in sorted((agent.get("sensors") or {}).items()):
            now = f"fault {state['fault']}" if state.get("fault") else f"{state.get('value')} °C"
            lines.append(
                f"  {sid}: {now}, {state.get('readings', 0)} readings, "
                f"{state.get('faults', 0)} faults, detectors {state.get('detectors', {})}"
            )
    return "\n".join(lines)
