"""On-site self-test, run by the technician tool on the board: config, probe read, probe faults,
Wi-Fi signal, clock sync and broker reachability. Prints one ``TWCHECK {json}`` line per check
(``ok`` is true, false, or null for "not applicable here") and never raises."""

import json

from sensorboard import assemble, config, net
from sensorboard.clock import Clock
from sensorboard.sensors.base import fault_reason

_WEAK_RSSI_DBM = -80


def _report(name, ok, detail):
    print("TWCHECK " + json.dumps({"check": name, "ok": ok, "detail": detail}))


def _probes(cfg):
    built = assemble.sensors(cfg)
    if not built:
        _report("probe_read", False, "no sensors configured")
        return
    import time

    for sensor in built:
        sensor.start(1)
    time.sleep_ms(max(s.conversion_ms for s in built))
    good = []
    faulty = []
    for sensor in built:
        fault = sensor.read()
        if fault:
            faulty.append(sensor.sensor_id + ": " + fault_reason(fault))
        else:
            good.append(sensor.sensor_id + " " + str(sensor.value_e4 / 10000) + " C")
    _report("probe_read", bool(good), ", ".join(good) or "no probe gave a temperature")
    _report("probe_faults", not faulty, ", ".join(faulty) or "no faults")


def _run(root):
    cfg = config.load(root)
    problems = config.fatal(cfg)
    _report("config", not problems and not cfg.errors, "; ".join(problems + cfg.errors) or "valid")
    _probes(cfg)
    rssi = net.rssi()
    if rssi is None:
        _report("wifi_rssi", None if net.connected() else False, "no Wi-Fi on this port")
    else:
        _report("wifi_rssi", rssi > _WEAK_RSSI_DBM, str(rssi) + " dBm")
    clock = Clock(cfg.ntp_host, cfg.ntp_port, cfg.ntp_resync_s)
    if cfg.ntp_host:
        synced = clock.sync()
        where = cfg.ntp_host + ":" + str(cfg.ntp_port)
        _report("clock_sync", synced, ("synced with " if synced else "no answer from ") + where)
    else:
        _report("clock_sync", clock.synced, "system clock (no NTP server configured)")
    link = assemble.transport(cfg, "selftest")
    if link is None:
        _report("broker", None, "transport none: the board keeps everything on flash")
        return
    ok, detail = link.reachable()
    _report("broker", ok, detail)
    link.close()


def main(root=None):
    from sensorboard.app import board_root

    try:
        _run(board_root() if root is None else root)
    except Exception as exc:  # a self-test that crashes must still say so in the table
        _report("selftest", False, repr(exc))
    print("TWCHECK-END")
