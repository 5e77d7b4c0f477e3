"""The board's entry point (MicroPython runs it after boot.py): start the sensor loop."""

from sensorboard import app

app.main()
