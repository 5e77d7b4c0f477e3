"""Wi-Fi station with retry and exponential backoff (boards only; the unix port has the host's
network, so every call there reports "connected")."""

import time


def _wlan():
    try:
        import network
    except ImportError:
        return None
    return network.WLAN(network.STA_IF)


def connected():
    wlan = _wlan()
    return True if wlan is None else wlan.isconnected()


def rssi():
    """Signal strength in dBm, or ``None`` where there is no Wi-Fi (unix port) or no link."""
    wlan = _wlan()
    if wlan is None or not wlan.isconnected():
        return None
    try:
        return wlan.status("rssi")
    except (ValueError, OSError):
        return None


def connect(ssid, password, attempts=6, first_wait_s=1, max_wait_s=32, feed=None):
    """Join ``ssid``; between attempts wait 1, 2, 4 ... ``max_wait_s`` seconds. Returns True when
    connected. ``feed`` is called while waiting (the watchdog may already run)."""
    wlan = _wlan()
    if wlan is None:
        return True
    if not ssid:
        return False
    wlan.active(True)
    wait_s = first_wait_s
    for attempt in range(attempts):
        if wlan.isconnected():
            return True
        try:
            wlan.connect(ssid, password)
        except OSError:
            pass
        deadline = time.ticks_add(time.ticks_ms(), wait_s * 1000 + 5000)
        while time.ticks_diff(deadline, time.ticks_ms()) > 0:
            if wlan.isconnected():
                return True
            if feed is not None:
                feed()
            time.sleep_ms(100)
        print("TW wifi attempt", attempt + 1, "failed")
        try:
            wlan.disconnect()
        except OSError:
            pass
        wait_s = min(wait_s * 2, max_wait_s)
    return wlan.isconnected()
