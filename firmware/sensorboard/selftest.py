"""On-site self-test, run by the technician tool on the board: config, probe read, probe faults,
Wi-Fi signal, clock sync and broker reachability. Prints one ``TWCHECK {json}`` line per check
(``ok`` is true, false, or null for "not applicable here") and never raises."""

import json
import socket

from sensorboard import assemble, config, net
from sensorboard.clock import Clock
from shared import protocol

_WEAK_RSSI_DBM = -80
_COAP_CON = 0
_COAP_ACK_OR_RST = (2, 3)  # message types that answer a ping


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
            faulty.append(sensor.sensor_id + ": " + protocol.FAULT_REASONS[fault - 1])
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
    if cfg.transport == "mqtt":
        ok, detail = _tcp_reachable(cfg.mqtt_host, cfg.mqtt_port, cfg.socket_timeout_s)
    else:
        ok, detail = _coap_ping(link)
    _report("broker", ok, detail)
    link.close()


def main(root=None):
    if root is None:
        import os

        root = "" if os.getcwd() == "/" else os.getcwd()
    try:
        _run(root)
    except Exception as exc:  # a self-test that crashes must still say so in the table
        _report("selftest", False, repr(exc))
    print("TWCHECK-END")


def _tcp_reachable(host, port, timeout_s):
    sock = None
    try:
        addr = socket.getaddrinfo(host, port)[0][-1]
        sock = socket.socket()
        sock.settimeout(timeout_s)
        sock.connect(addr)
        return True, host + ":" + str(port) + " accepts connections"
    except (OSError, IndexError) as exc:
        return False, host + ":" + str(port) + " " + repr(exc)
    finally:
        if sock is not None:
            sock.close()


def _coap_ping(link):
    """A CoAP ping (empty confirmable message): a reset answer proves the server is there."""
    from sensorboard.transport import coap

    if link.sock is None and not link.connect():
        return False, "cannot open a UDP socket"
    message_id = link._next_id()
    ping = coap.encode_request(message_id, b"", "", None, 0, _COAP_CON)
    host = link.host + ":" + str(link.port)
    for _ in range(3):
        link.sock.sendto(ping, link.addr)
        link.sock.settimeout(link.ack_timeout_ms / 1000)
        try:
            data = link.sock.recv(64)
        except OSError:
            continue
        message = coap.decode_message(data)
        if message is not None and message[2] == message_id and message[0] in _COAP_ACK_OR_RST:
            return True, host + " answered a CoAP ping"
    return False, host + " did not answer a CoAP ping"
