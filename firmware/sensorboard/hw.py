"""Board services that only exist on real hardware: the watchdog and the status LED.

Each imports ``machine`` lazily and falls back to a harmless stand-in on the unix port.
"""


class Watchdog:
    """The hardware watchdog when the port has one; ``timeout_s`` 0 disables it."""

    def __init__(self, timeout_s):
        self.wdt = None
        if timeout_s <= 0:
            return
        try:
            from machine import WDT

            self.wdt = WDT(timeout=timeout_s * 1000)
        except (ImportError, AttributeError, ValueError):
            self.wdt = None

    def feed(self):
        if self.wdt is not None:
            self.wdt.feed()


class StatusLed:
    """The board's status LED (pin from the board profile), a no-op without one."""

    def __init__(self, pin_number):
        self.pin = None
        if pin_number is None or pin_number < 0:
            return
        try:
            from machine import Pin

            self.pin = Pin(pin_number, Pin.OUT)
        except (ImportError, AttributeError, ValueError):
            self.pin = None

    def set(self, on):
        if self.pin is not None:
            self.pin.value(1 if on else 0)
