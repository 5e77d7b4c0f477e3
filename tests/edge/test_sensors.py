"""Sensors read real files in the kernel's formats; every probe fault becomes a reason."""

from __future__ import annotations

from pathlib import Path

from edge.sensors.i2c import sht3x_celsius, sht3x_crc
from edge.sensors.onewire import DS18B20Sensor, discover, parse_w1_slave
from edge.sensors.simulator import SimulatedSensor
from edge.sensors.thermal import CpuSensor
from shared import protocol
from tests.edge.sysfs import W1Bus

ROM = "28-0316a2795dff"


def test_ds18b20_reads_the_kernel_w1_slave_format(tmp_path: Path) -> None:
    bus = W1Bus(tmp_path)
    bus.set_celsius(ROM, 23.125)
    assert DS18B20Sensor(ROM, str(tmp_path)).read(0) == (23.125, None)
    bus.set_celsius(ROM, -10.0625)  # the kernel truncates -10062.5 milli-°C
    assert DS18B20Sensor(ROM, str(tmp_path)).read(0) == (-10.062, None)


def test_a_real_kernel_sample_parses() -> None:
    text = "72 01 4b 46 7f ff 0e 10 57 : crc=57 YES\n72 01 4b 46 7f ff 0e 10 57 t=23125\n"
    assert parse_w1_slave(text) == (23.125, None)


def test_probe_faults_are_flagged_not_temperatures(tmp_path: Path) -> None:
    bus = W1Bus(tmp_path)
    sensor = DS18B20Sensor(ROM, str(tmp_path), crc_retries=1)
    bus.set_power_on(ROM)
    assert sensor.read(0) == (None, protocol.FAULT_POWER_ON)
    bus.set_disconnected(ROM)
    assert sensor.read(0) == (None, protocol.FAULT_DISCONNECTED)
    bus.set_zero_scratchpad(ROM)
    assert sensor.read(0) == (None, protocol.FAULT_ZERO_SCRATCHPAD)
    bus.set_crc_failure(ROM)
    assert sensor.read(0) == (None, protocol.FAULT_CRC)
    assert sensor.crc_errors == 2  # one retry, then flagged
    bus.remove(ROM)
    assert sensor.read(0) == (None, protocol.FAULT_MISSING)
    bus.set_celsius(ROM, 4.5)  # the probe comes back
    assert sensor.read(0) == (4.5, None)


def test_all_ones_from_an_empty_bus_is_a_disconnected_probe() -> None:
    text = "ff ff ff ff ff ff ff ff ff : crc=c9 NO\nff ff ff ff ff ff ff ff ff t=-62\n"
    assert parse_w1_slave(text) == (None, protocol.FAULT_DISCONNECTED)


def test_garbage_in_w1_slave_is_a_read_error() -> None:
    assert parse_w1_slave("") == (None, protocol.FAULT_READ_ERROR)
    text = "72 01 4b 46 7f ff 0e 10 57 : crc=57 YES\n72 01 4b 46 7f ff 0e 10 57 t=abc\n"
    assert parse_w1_slave(text) == (None, protocol.FAULT_READ_ERROR)


def test_crc_failure_is_retried_and_a_good_reread_wins(tmp_path: Path) -> None:
    bus = W1Bus(tmp_path)
    bus.set_crc_failure(ROM)
    sensor = DS18B20Sensor(ROM, str(tmp_path), crc_retries=3)
    reads = iter([False, True])
    original = sensor._read_once

    def flaky() -> tuple[float | None, str | None]:
        # The bus recovers after the first failed read, as real CRC bursts do.
        if next(reads, True):
            bus.set_celsius(ROM, 19.5)
        return original()

    sensor._read_once = flaky  # type: ignore[method-assign]
    assert sensor.read(0) == (19.5, None)
    assert sensor.crc_errors == 1


def test_newer_kernels_temperature_file_is_used_without_w1_slave(tmp_path: Path) -> None:
    bus = W1Bus(tmp_path)
    bus.set_temperature_file_only(ROM, 21250)
    assert DS18B20Sensor(ROM, str(tmp_path)).read(0) == (21.25, None)
    bus.set_temperature_file_only(ROM, 85000)
    assert DS18B20Sensor(ROM, str(tmp_path)).read(0) == (None, protocol.FAULT_POWER_ON)


def test_discover_lists_only_ds18b20_family(tmp_path: Path) -> None:
    bus = W1Bus(tmp_path)
    bus.set_celsius(ROM, 20)
    bus.set_celsius("28-000000000001", 20)
    (tmp_path / "w1_bus_master1").mkdir()
    (tmp_path / "10-000802b4ba0f").mkdir()
    assert discover(str(tmp_path)) == ["28-000000000001", ROM]
    assert discover(str(tmp_path / "nothing")) == []


def test_cpu_thermal_zone(tmp_path: Path) -> None:
    zone = tmp_path / "thermal_zone0"
    zone.mkdir()
    (zone / "temp").write_text("48312\n")
    assert CpuSensor("cpu", str(zone)).read(0) == (48.312, None)
    (zone / "temp").write_text("garbage\n")
    assert CpuSensor("cpu", str(zone)).read(0) == (None, protocol.FAULT_READ_ERROR)
    assert CpuSensor("cpu", str(tmp_path / "gone")).read(0) == (None, protocol.FAULT_MISSING)


def test_sht3x_conversion_and_crc() -> None:
    # Sensirion datasheet example: CRC of 0xBEEF is 0x92.
    assert sht3x_crc(b"\xbe\xef") == 0x92
    raw = 0x6666  # 40 % of full scale: -45 + 175 * 0.4 = 25 °C
    frame = bytes([0x66, 0x66, sht3x_crc(b"\x66\x66"), 0, 0, 0])
    value, fault = sht3x_celsius(frame)
    assert fault is None and abs(value - (-45 + 175 * raw / 65535)) < 1e-9
    assert sht3x_celsius(bytes([0x66, 0x66, 0x00, 0, 0, 0])) == (None, protocol.FAULT_CRC)


def test_simulator_is_reproducible_and_shows_the_configured_faults() -> None:
    a = SimulatedSensor("sim-0", seed=3, noise_c=0.2)
    b = SimulatedSensor("sim-0", seed=3, noise_c=0.2)
    times = [1000.0 + i for i in range(50)]
    assert [a.read(t) for t in times] == [b.read(t) for t in times]

    power_on = SimulatedSensor("sim-1", power_on_reading=True)
    assert power_on.read(0) == (None, protocol.FAULT_POWER_ON)
    assert power_on.read(1)[1] is None

    drops = SimulatedSensor("sim-2", dropout_probability=1.0)
    assert drops.read(0) == (None, protocol.FAULT_CRC)

    stuck = SimulatedSensor("sim-3", stuck_probability=1.0, stuck_duration_s=100, noise_c=1)
    first = stuck.read(0)
    assert all(stuck.read(t) == first for t in range(1, 50))


def test_simulator_steps_and_drift_follow_the_config() -> None:
    sim = SimulatedSensor(
        "sim-0", noise_c=0, diurnal_amplitude_c=0, step_c=0.25, step_every_s=60, drift_c_per_h=1
    )
    assert sim.read(0) == (20.0, None)
    assert sim.read(30) == (20.0, None)  # drift 1/120 °C rounds away at 1/16 °C steps
    assert sim.read(3600) == (20.0 + 0.25 * 60 + 1.0, None)
