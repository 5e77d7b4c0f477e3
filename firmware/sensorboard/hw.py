"""Board services that only exist on real hardware: the watchdog and the status LED.

Each imports ``machine`` lazily and, where the port has no such thing (the unix port), gives back
``None`` so the caller skips it. Functions, not classes: on a 64 KB heap every class costs.
"""


def watchdog(timeout_s):
    """The hardware watchdog's ``feed`` function, or ``None`` (disabled with 0, or no WDT)."""
    if timeout_s <= 0:
        return None
    try:
        from machine import WDT

        return WDT(timeout=timeout_s * 1000).feed
    except (ImportError, AttributeError, ValueError):
        return None


def status_led(pin_number):
    """The status LED pin's ``value`` function, or ``None`` without an LED."""
    if pin_number is None or pin_number < 0:
        return None
    try:
        from machine import Pin

        return Pin(pin_number, Pin.OUT).value
    except (ImportError, AttributeError, ValueError):
        return None
