"""The RP2040's internal temperature sensor (ADC channel 4): a coarse board temperature."""

from sensorboard.sensors import base

_LOW_E4 = -400000  # outside -40..85 °C the chip is not in its rated range
_HIGH_E4 = 850000


class RP2040Internal(base.Sensor):
    def __init__(self, sensor_id, adc=None):
        base.Sensor.__init__(self, sensor_id)
        if adc is None:
            import machine

            adc = machine.ADC(4)
        self.adc = adc

    def measure(self):
        raw = self.adc.read_u16()
        # Datasheet 4.9.5: T = 27 - (V - 0.706) / 0.001721, V = raw * 3.3 / 65535.
        # In integers (1e-4 °C): avoids floats on the hot path.
        microvolts = raw * 3300000 // 65535
        value = 270000 - (microvolts - 706000) * 10000 // 1721
        if value < _LOW_E4 or value > _HIGH_E4:
            return base.FAULT_OUT_OF_RANGE
        self.value_e4 = value
        return base.OK
