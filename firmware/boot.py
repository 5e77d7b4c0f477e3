"""Runs first at power-on: join Wi-Fi with retry and exponential backoff, then hand over to
``main.py``. A board that cannot join still starts its loop and spools to flash (the loop keeps
retrying), so an access point that is down never costs readings."""

try:
    from sensorboard import config, net

    _cfg = config.load("")
    if _cfg.wifi_ssid:
        net.connect(_cfg.wifi_ssid, _cfg.wifi_password, _cfg.wifi_attempts)
except Exception as exc:  # boot must never stop the board from reaching main.py
    print("TW boot", repr(exc))
