"""A minimal CoAP client (RFC 7252) for boards that post batches over UDP: one confirmable POST
to ``coap://host:port/tw/v1/<dev>/readings`` with Content-Format 50 (application/json), resent
with exponential backoff (ACK_TIMEOUT x random 1..1.5, doubled each time, MAX_RETRANSMIT times).
The collector answers 2.04 Changed with the ack JSON, piggybacked or as a separate response.

Written by hand because micropython-lib has no CoAP client and aiocoap needs CPython's asyncio
and far more heap than a board has; it does only what the board needs.
"""

import os
import socket
import time

from sensorboard.transport import Transport
from shared import protocol
from shared.compat import const

_CON = const(0)
_NON = const(1)
_ACK = const(2)
_RST = const(3)
_POST = const(0x02)
_CHANGED = const(0x44)  # 2.04
_CREATED = const(0x41)  # 2.01
_OPT_URI_PATH = const(11)
_OPT_CONTENT_FORMAT = const(12)
_OPT_URI_QUERY = const(15)
_JSON = const(50)
_ACK_RANDOM_FACTOR_PERCENT = const(150)


def _option(out, delta, value):
    length = len(value)
    head = len(out)
    out.append(0)
    nibbles = 0
    for number, shift in ((delta, 4), (length, 0)):
        if number < 13:
            nibbles |= number << shift
        elif number < 269:
            nibbles |= 13 << shift
            out.append(number - 13)
        else:
            nibbles |= 14 << shift
            out.append((number - 269) >> 8)
            out.append((number - 269) & 0xFF)
    out[head] = nibbles
    out.extend(value)


def encode_request(message_id, token, path, payload, code=_POST, mtype=_CON, query=None):
    """A CoAP message as bytes: header, token, Uri-Path options, Content-Format, Uri-Query
    (options in ascending number, as RFC 7252 wants them), payload."""
    out = bytearray()
    out.append(0x40 | mtype << 4 | len(token))
    out.append(code)
    out.append(message_id >> 8 & 0xFF)
    out.append(message_id & 0xFF)
    out.extend(token)
    last = 0
    for segment in path.split("/"):
        if segment:
            _option(out, _OPT_URI_PATH - last, segment.encode())
            last = _OPT_URI_PATH
    if payload is not None:
        _option(out, _OPT_CONTENT_FORMAT - last, bytes((_JSON,)))
        last = _OPT_CONTENT_FORMAT
    if query:
        _option(out, _OPT_URI_QUERY - last, query.encode())
    if payload is not None:
        out.append(0xFF)
        out.extend(payload)
    return out


def decode_message(data):
    """``(type, code, message_id, token, payload)`` or ``None`` for anything malformed."""
    try:
        return _decode(data)
    except IndexError:
        return None


def _decode(data):
    if len(data) < 4 or data[0] >> 6 != 1:
        return None
    mtype = data[0] >> 4 & 3
    tkl = data[0] & 0x0F
    if tkl > 8 or len(data) < 4 + tkl:
        return None
    pos = 4 + tkl
    while pos < len(data):
        if data[pos] == 0xFF:
            return mtype, data[1], data[2] << 8 | data[3], bytes(data[4 : 4 + tkl]), data[pos + 1 :]
        delta = data[pos] >> 4
        length = data[pos] & 0x0F
        pos += 1
        if delta == 15 or length == 15:
            return None
        pos += 1 if delta == 13 else 2 if delta == 14 else 0
        if length == 13:
            length = data[pos] + 13
            pos += 1
        elif length == 14:
            length = (data[pos] << 8 | data[pos + 1]) + 269
            pos += 2
        pos += length
    if pos > len(data):
        return None
    return mtype, data[1], data[2] << 8 | data[3], bytes(data[4 : 4 + tkl]), b""


def _random_percent():
    return 100 + os.urandom(1)[0] * (_ACK_RANDOM_FACTOR_PERCENT - 100) // 255


class CoapTransport(Transport):
    def __init__(self, cfg, boot_id, feed=None):
        Transport.__init__(self, boot_id)
        self.host = cfg.coap_host
        self.port = cfg.coap_port
        # The collector identifies the board by its ingest token, sent as ?t=<token>.
        self.query = ("t=" + cfg.coap_token) if cfg.coap_token else None
        self.path = protocol.topic(cfg.device_id, protocol.T_READINGS)
        self.ack_timeout_ms = int(cfg.coap_ack_timeout_s * 1000)
        self.max_retransmit = cfg.coap_max_retransmit
        self.feed = feed
        self.sock = None
        self.addr = None
        self.message_id = os.urandom(1)[0] << 8 | os.urandom(1)[0]
        self.retransmissions = 0

    def connect(self):
        self.close()
        try:
            self.addr = socket.getaddrinfo(self.host, self.port)[0][-1]
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        except (OSError, IndexError) as exc:
            self.note_error("connect: " + repr(exc))
            return False
        self.connected = True
        return True

    def poll(self):
        """Nothing arrives unasked over CoAP: the ack is the response to :meth:`send`."""

    def close(self):
        if self.sock is not None:
            self.sock.close()
        self.sock = None
        self.connected = False

    def _next_id(self):
        self.message_id = (self.message_id + 1) & 0xFFFF
        return self.message_id

    def exchange(self, payload, path=None, code=_POST):
        """One confirmable request; returns ``(code, payload)`` of the response or ``None``."""
        if self.sock is None and not self.connect():
            return None
        sock = self.sock
        assert sock is not None
        message_id = self._next_id()
        token = os.urandom(4)
        request = encode_request(
            message_id, token, path or self.path, payload, code, _CON, self.query
        )
        timeout_ms = self.ack_timeout_ms * _random_percent() // 100
        acked = False
        try:
            for attempt in range(self.max_retransmit + 1):
                if attempt:
                    self.retransmissions += 1
                if not acked:
                    sock.sendto(request, self.addr)
                result = self._await(sock, message_id, token, timeout_ms)
                if result == "acked":
                    acked = True  # empty ACK: the response comes separately, keep waiting
                elif result is not None:
                    return result
                elif not acked:
                    timeout_ms *= 2
        except OSError as exc:
            self.note_error("coap: " + repr(exc))
            return None
        self.note_error("coap: no response after " + str(self.max_retransmit) + " retransmissions")
        return None

    def _await(self, sock, message_id, token, timeout_ms):
        deadline = time.ticks_add(time.ticks_ms(), timeout_ms)
        while True:
            left = time.ticks_diff(deadline, time.ticks_ms())
            if left <= 0:
                return None
            if self.feed is not None:
                self.feed()
            sock.settimeout(min(left, 1000) / 1000)
            try:
                data, source = sock.recvfrom(1280)
            except OSError:
                continue  # timed out: check the deadline, feed the watchdog
            message = decode_message(data)
            if message is None:
                continue
            mtype, code, mid, rtoken, body = message
            if mtype == _RST and mid == message_id:
                raise OSError("reset by peer")
            if mtype == _ACK and mid == message_id:
                if code == 0:
                    return "acked"
                if rtoken == token:
                    return code, body
            elif mtype in (_CON, _NON) and rtoken == token:
                if mtype == _CON:
                    sock.sendto(encode_request(mid, b"", "", None, 0, _ACK), source)
                return code, body
            elif mtype == _CON:
                # Someone else's confirmable message: reject it so it is not resent to us.
                sock.sendto(encode_request(mid, b"", "", None, 0, _RST), source)

    def send(self, seq, payload):
        result = self.exchange(payload)
        if result is None:
            self.close()
            return False
        code, body = result
        if code in (_CHANGED, _CREATED):
            self.handle_ack(body)
            return True
        self.note_error("coap: response code " + str(code >> 5) + "." + str(code & 31))
        return False
