"""Ways a batch leaves the board, behind one small interface; chosen by ``transport`` in the
config and imported only when chosen (``umqtt`` is not needed on a CoAP board)."""

import json

from shared import protocol


class Transport:
    """Implementations have ``connect()``, ``send(seq, payload)``, ``poll()`` and ``close()``:
    send a batch, then learn from ``poll()`` (or the send itself) when the collector
    acknowledged it. ``last_ack`` is ``(seq, stored, duplicates, rejected)`` of the newest ack for
    this boot, and only a committed batch is ever acknowledged. ``pushed`` holds the newest config
    message from the collector until the board takes it (MQTT only; CoAP boards get their config
    when they are flashed)."""

    def __init__(self, boot_id):
        self.boot_id = boot_id
        self.connected = False
        self.last_ack = None
        self.pushed = None
        self.errors = 0
        self.last_error = ""

    def handle_ack(self, payload):
        """Record an acknowledgement if it is one of ours; anything else is counted and ignored."""
        try:
            ack = json.loads(payload)
            if ack.get("v") != protocol.PROTOCOL_VERSION or ack.get("boot") != self.boot_id:
                return False
            self.last_ack = (ack["seq"], ack.get("stored", 0), ack.get("dup", 0), ack.get("rej", 0))
            return True
        except (ValueError, KeyError, AttributeError, TypeError):
            self.note_error("bad ack")
            return False

    def note_error(self, text):
        self.errors += 1
        self.last_error = text
