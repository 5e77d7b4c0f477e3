"""Wire protocol v1: topics, paths, limits and the batch encoder.

This module runs on the boards (MicroPython) as well as on CPython, so it builds the JSON text by
hand: MicroPython's ``json.dumps`` has other separators and float formatting than CPython's, and
the bytes a batch turns into must be the same everywhere (golden vectors pin them down).

A batch, as sent (keys in this order, no spaces)::

    {"v":1,"dev":"d1","seq":7,"boot":"9f2c01aa","t0":1763900000,
     "r":[["s1",0,21.0625,0],["s1",1000,null,1,"power_on"]],
     "ev":[["s1",1000,"threshold_high",31.5,30.0]]}

``t0`` is the batch's base time (UTC seconds since 1970); each reading carries its offset from it
in milliseconds, so per-reading numbers stay small integers on 32-bit boards. See docs/protocol.md.
"""

from shared.compat import const

PROTOCOL_VERSION = const(1)
TOPIC_PREFIX = "tw/v1"

# Size limits. A board with a 64 KB heap sends far smaller batches than these; the edge agent
# batches up to MAX_READINGS_PER_BATCH. Receivers refuse anything larger before parsing it.
MAX_PAYLOAD_BYTES = const(65536)
MAX_READINGS_PER_BATCH = const(1000)
MAX_EVENTS_PER_BATCH = const(100)
MAX_ID_LENGTH = const(64)

# Reading quality flags (a bit mask).
Q_OK = const(0)
Q_PROBE_FAULT = const(1)  # the value is not a temperature; the fault reason says why
Q_CLOCK_UNSYNCED = const(2)  # the sender's clock was not synchronised: the time is a guess

# Probe fault reasons (the fifth element of a faulty reading).
FAULT_POWER_ON = "power_on"  # DS18B20 85.0 °C power-on value
FAULT_DISCONNECTED = "disconnected"  # -127 °C / no presence pulse
FAULT_ZERO_SCRATCHPAD = "zero_scratchpad"  # all-zero scratchpad: passes CRC, reads as 0.0
FAULT_CRC = "crc"  # CRC failed after retries
FAULT_MISSING = "missing"  # the probe vanished from the bus
FAULT_OUT_OF_RANGE = "out_of_range"  # outside what the probe can measure
FAULT_READ_ERROR = "read_error"  # any other failed read
FAULT_REASONS = (
    FAULT_POWER_ON,
    FAULT_DISCONNECTED,
    FAULT_ZERO_SCRATCHPAD,
    FAULT_CRC,
    FAULT_MISSING,
    FAULT_OUT_OF_RANGE,
    FAULT_READ_ERROR,
)

# Detector event kinds.
EV_THRESHOLD_HIGH = "threshold_high"
EV_THRESHOLD_LOW = "threshold_low"
EV_THRESHOLD_CLEAR = "threshold_clear"
EV_ANOMALY = "anomaly"
EVENT_KINDS = (EV_THRESHOLD_HIGH, EV_THRESHOLD_LOW, EV_THRESHOLD_CLEAR, EV_ANOMALY)

# MQTT topic kinds: tw/v1/<device>/<kind>
T_READINGS = "readings"  # device -> cloud, QoS 1, a batch
T_EVENTS = "events"  # device -> cloud, QoS 1, a batch holding only events (sent ahead of backlog)
T_STATUS = "status"  # device -> cloud, retained, last will "offline"
T_CONFIG = "config"  # cloud -> device, retained
T_ACK = "ack"  # cloud -> device, QoS 1, after the batch is committed
SHARED_GROUP = "thermowatch-collectors"

# CoAP uses the MQTT topic as its path (POST coap://host/tw/v1/<device>/readings, confirmable);
# HTTP has one ingest endpoint and takes the device from the batch and its credential.
HTTP_INGEST_PATH = "/api/v1/ingest"


def topic(device_id, kind):
    """The MQTT topic of one device for one kind, e.g. ``tw/v1/d1/readings``."""
    return TOPIC_PREFIX + "/" + device_id + "/" + kind


def shared_subscription(kind, group=SHARED_GROUP):
    """The shared subscription that lets several collectors split the load of one topic kind."""
    return "$share/" + group + "/" + TOPIC_PREFIX + "/+/" + kind


def parse_topic(name):
    """``(device_id, kind)`` for a protocol topic, or ``None`` for anything else."""
    parts = name.split("/")
    if len(parts) != 4 or parts[0] + "/" + parts[1] != TOPIC_PREFIX:
        return None
    return parts[2], parts[3]


_ID_EXTRA = "_-.:"


def valid_id(text):
    """Device and sensor ids: 1-64 of ``A-Z a-z 0-9 _ - . :`` (safe in topics, paths, JSON)."""
    if not isinstance(text, str) or not 0 < len(text) <= MAX_ID_LENGTH:
        return False
    for ch in text:
        if not ("a" <= ch <= "z" or "A" <= ch <= "Z" or "0" <= ch <= "9" or ch in _ID_EXTRA):
            return False
    return True


def format_celsius(value):
    """A temperature as JSON text, rounded to 1/10000 °C (a DS18B20 step is 1/16 °C) with integer
    arithmetic, so that boards with single-precision floats and CPython write the same digits
    (``21.0625``, ``-4.2``)."""
    if value is None or value != value or value in (float("inf"), float("-inf")):
        return "null"
    scaled = int(value * 10000 + (0.5 if value >= 0 else -0.5))
    sign = "-" if scaled < 0 else ""
    scaled = -scaled if scaled < 0 else scaled
    whole = scaled // 10000
    frac = scaled % 10000
    if frac == 0:
        return sign + str(whole) + ".0"
    text = str(frac)
    text = "0" * (4 - len(text)) + text
    while text[-1] == "0":
        text = text[:-1]
    return sign + str(whole) + "." + text


def _quote(text):
    # Ids are checked with valid_id, so they never need escaping; reasons and kinds are ours.
    return '"' + text + '"'


def encode_reading(sensor_id, dt_ms, value, quality=Q_OK, fault=None):
    """One reading as JSON text: ``["s1",0,21.5,0]`` or ``["s1",0,null,1,"power_on"]``.
    A probe fault never travels as a temperature: its value is sent as ``null``."""
    if quality & Q_PROBE_FAULT:
        text = '["' + sensor_id + '",' + str(int(dt_ms)) + ",null," + str(quality)
        return text + ',"' + (fault or FAULT_READ_ERROR) + '"]'
    return "".join(
        ('["', sensor_id, '",', str(int(dt_ms)), ",", format_celsius(value), ",", str(quality), "]")
    )


def encode_event(sensor_id, dt_ms, kind, value, detail):
    """One detector output: ``["s1",1000,"threshold_high",31.5,30.0]``; ``detail`` is the limit
    for threshold events and the z-score for anomalies."""
    return "".join(
        (
            '["',
            sensor_id,
            '",',
            str(int(dt_ms)),
            ',"',
            kind,
            '",',
            format_celsius(value),
            ",",
            format_celsius(detail),
            "]",
        )
    )


def encode_batch(device_id, seq, boot_id, t0, readings, events=None):
    """A whole batch as UTF-8 bytes.

    ``readings`` holds tuples ``(sensor_id, dt_ms, value, quality, fault)`` (the last may be
    omitted or ``None``); ``events`` holds tuples ``(sensor_id, dt_ms, kind, value, detail)``.
    """
    parts = [
        '{"v":1,"dev":',
        _quote(device_id),
        ',"seq":',
        str(int(seq)),
        ',"boot":',
        _quote(boot_id),
        ',"t0":',
        str(int(t0)),
        ',"r":[',
    ]
    first = True
    for reading in readings:
        if not first:
            parts.append(",")
        first = False
        fault = reading[4] if len(reading) > 4 else None
        parts.append(encode_reading(reading[0], reading[1], reading[2], reading[3], fault))
    parts.append("]")
    if events:
        parts.append(',"ev":[')
        first = True
        for ev in events:
            if not first:
                parts.append(",")
            first = False
            parts.append(encode_event(ev[0], ev[1], ev[2], ev[3], ev[4]))
        parts.append("]")
    parts.append("}")
    return "".join(parts).encode()


def encode_ack(seq, boot_id, stored, duplicates, rejected):
    """The collector's application-level acknowledgement, sent only after the batch committed."""
    return "".join(
        (
            '{"v":1,"seq":',
            str(int(seq)),
            ',"boot":',
            _quote(boot_id),
            ',"stored":',
            str(int(stored)),
            ',"dup":',
            str(int(duplicates)),
            ',"rej":',
            str(int(rejected)),
            "}",
        )
    ).encode()


def encode_status(state, boot_id=None, firmware=None):
    """Device status, published retained; the last will carries ``offline``."""
    text = '{"v":1,"state":"' + state + '"'
    if boot_id:
        text += ',"boot":"' + boot_id + '"'
    if firmware:
        text += ',"fw":"' + firmware + '"'
    return (text + "}").encode()
