"""Builds the board's parts from its config, once at start-up: the sensors by kind, the shared
detectors per sensor, the transport by name. Drivers are imported only when configured (the unix
port has no ``machine``/``onewire``), and ``app.start`` unloads this module once it is built.
"""

from sensorboard.sensors import base


def sensors(cfg):
    """The configured sensors in config order; one that cannot start becomes a faulty stub."""
    sensors = []  # type: list[base.Sensor]
    buses = {}
    for item in cfg.sensors:
        kind = item["kind"]
        sensor_id = item["id"]
        try:
            if kind == "sim":
                from sensorboard.sensors.sim import SimProbe

                sensors.append(
                    SimProbe(
                        sensor_id,
                        item.get("base_c", 21.0),
                        item.get("swing_c", 2.0),
                        item.get("period_samples", 120),
                        item.get("script"),
                    )
                )
            elif kind == "ds18b20":
                from sensorboard.sensors import ds18b20

                pin = item.get("pin", cfg.onewire_pin)
                if pin not in buses:
                    buses[pin] = ds18b20.open_bus(pin)
                rom = item.get("rom")
                rom = bytes.fromhex(rom) if rom else None
                sensors.append(ds18b20.DS18B20(sensor_id, buses[pin], rom))
            else:
                from sensorboard.sensors.rp2040 import RP2040Internal

                sensors.append(RP2040Internal(sensor_id))
        except Exception as exc:  # no such hardware here: report it as a faulty probe
            cfg.errors.append("sensor " + sensor_id + ": " + repr(exc))
            sensors.append(base.Sensor(sensor_id))
    return sensors


def _settings(cfg, item, name):
    merged = {}
    shared_settings = cfg.detectors.get(name)
    for source in (shared_settings, item.get(name)):
        if isinstance(source, dict):
            for key in source:
                merged[key] = source[key]
    return merged or None


def detectors(cfg):
    """One :class:`SensorDetectors` (or ``None``) per configured sensor, in config order."""
    result = []
    for item in cfg.sensors:
        threshold = ewma = None
        settings = _settings(cfg, item, "threshold")
        if settings:
            from shared.detectors.threshold import ThresholdDetector

            try:
                threshold = ThresholdDetector(**settings)
            except (TypeError, ValueError) as exc:
                cfg.errors.append("threshold for " + item["id"] + ": " + str(exc))
        settings = _settings(cfg, item, "ewma")
        if settings:
            from shared.detectors.ewma import EwmaDetector

            try:
                ewma = EwmaDetector(**settings)
            except (TypeError, ValueError) as exc:
                cfg.errors.append("ewma for " + item["id"] + ": " + str(exc))
        result.append((threshold, ewma) if threshold or ewma else None)
    return result


def transport(cfg, boot_id, feed=None):
    """The configured transport, or ``None`` for an offline board (everything stays on flash)."""
    if cfg.transport == "mqtt":
        from sensorboard.transport.mqtt import MqttTransport

        return MqttTransport(cfg, boot_id)
    if cfg.transport == "coap":
        from sensorboard.transport.coap import CoapTransport

        return CoapTransport(cfg, boot_id, feed)
    return None
