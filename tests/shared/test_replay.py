"""``thermowatch replay`` over small CSV files: events, JSON lines, refused rows, bad settings."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from thermowatch.replay import load_csv, parse_time, replay

FRIDGE = """time,sensor_id,value
2025-11-23T12:00:00Z,fridge,4.0
2025-11-23T12:01:00Z,fridge,4.1
2025-11-23T12:02:00Z,fridge,9.0
2025-11-23T12:03:00Z,fridge,9.5
2025-11-23T12:04:00Z,fridge,
2025-11-23T12:05:00+00:00,fridge,9.2
2025-11-23T12:06:00,fridge,4.0
1763899680,fridge,4.0
"""
T_1200 = 1763899200.0  # 2025-11-23T12:00:00Z

app = typer.Typer()
app.command()(replay)


def _run(tmp_path: Path, text: str, *args: str) -> tuple[int, str, str]:
    path = tmp_path / "series.csv"
    path.write_text(text)
    result = CliRunner().invoke(app, [str(path), *args])
    return result.exit_code, result.stdout, result.stderr


def test_threshold_events_with_duration_and_hysteresis_as_json(tmp_path: Path) -> None:
    code, out, err = _run(
        tmp_path,
        FRIDGE,
        "--high-c",
        "8",
        "--hysteresis-c",
        "1",
        "--min-duration-s",
        "60",
        "--no-anomalies",
        "--json",
    )
    assert code == 0, err
    events = [json.loads(line) for line in out.splitlines()]
    # Over 8 °C from 12:02, held for 60 s at 12:03; the fault at 12:04 neither clears nor
    # restarts it; back under 7 °C from 12:06, held for 60 s... at the 12:08 sample.
    assert events == [
        {
            "time": "2025-11-23T12:03:00Z",
            "t_s": T_1200 + 180,
            "sensor_id": "fridge",
            "kind": "threshold_high",
            "value": 9.5,
            "detail": 8.0,
            "source": "threshold",
        },
        {
            "time": "2025-11-23T12:08:00Z",
            "t_s": T_1200 + 480,
            "sensor_id": "fridge",
            "kind": "threshold_clear",
            "value": 4.0,
            "detail": 8.0,
            "source": "threshold",
        },
    ]
    assert "8 samples (1 probe faults) from 1 sensors, 2 events, 0 rows refused" in err


def test_table_lists_events_of_every_sensor_in_time_order(tmp_path: Path) -> None:
    text = FRIDGE + "".join(f"{T_1200 + 30 + 60 * i:.0f},freezer,-18\n" for i in range(6))
    text += f"{T_1200 + 400:.0f},freezer,-2\n"
    code, out, _ = _run(
        tmp_path,
        text,
        "--high-c",
        "8",
        "--min-duration-s",
        "0",
        "--warmup",
        "3",
        "--alpha",
        "0.5",
    )
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["time", "sensor", "event", "value", "detail"]
    rows = [line.split() for line in lines[1:]]
    # The freezer's -2 is over the fridge's limit too (one set of limits per replay), and far
    # outside its own steady -18: both detectors speak.
    assert rows == [
        ["2025-11-23T12:02:00Z", "fridge", "threshold_high", "9", "limit", "8"],
        ["2025-11-23T12:06:00Z", "fridge", "threshold_clear", "4", "limit", "8"],
        ["2025-11-23T12:06:40Z", "freezer", "anomaly", "-2", "z", "256"],
    ]


def test_anomalies_are_found_after_warmup(tmp_path: Path) -> None:
    text = "".join(f"{100 + 10 * i},s1,{20 + (i % 2) / 16}\n" for i in range(30))
    text += "500,s1,23.5\n"
    code, out, _ = _run(tmp_path, text, "--json", "--warmup", "10", "--z-limit", "4")
    assert code == 0
    events = [json.loads(line) for line in out.splitlines()]
    assert [(e["t_s"], e["kind"], e["value"]) for e in events] == [(500.0, "anomaly", 23.5)]
    assert events[0]["detail"] > 4


def test_bad_rows_are_refused_with_line_and_reason_and_the_rest_replayed(tmp_path: Path) -> None:
    text = (
        "1000,s1,30.5\n"  # no header: fine
        "not-a-time,s1,1\n"
        "1001,s 1,1\n"
        "1002,s1,warm\n"
        "1003,s1,inf\n"
        "1004,s1\n"
        "\n"
        "# a comment\n"
        "1005,s1,31\n"
    )
    code, out, err = _run(tmp_path, text, "--high-c", "30", "--min-duration-s", "5", "--json")
    assert code == 0
    assert [json.loads(line)["t_s"] for line in out.splitlines()] == [1005.0]
    assert "2 samples (0 probe faults) from 1 sensors, 1 events, 5 rows refused" in err
    for line, reason in [
        (2, "bad_time"),
        (3, "bad_sensor_id"),
        (4, "bad_value"),
        (5, "not_a_number"),
        (6, "malformed_row"),
    ]:
        assert f"line {line}: {reason}" in err


def test_rows_out_of_order_are_replayed_in_time_order(tmp_path: Path) -> None:
    text = "1020,s1,31\n1000,s1,31\n1010,s1,29\n"
    code, out, _ = _run(tmp_path, text, "--high-c", "30", "--min-duration-s", "5", "--json")
    assert code == 0
    # In time order the 29 at 1010 restarts the timing, so nothing fires by 1020.
    assert out == ""


@pytest.mark.parametrize(
    "args",
    [
        ["--high-c", "5", "--low-c", "10"],
        ["--alpha", "0"],
        ["--no-anomalies"],
        ["--hysteresis-c", "-1", "--high-c", "5"],
    ],
)
def test_impossible_settings_are_a_usage_error(tmp_path: Path, args: list[str]) -> None:
    code, out, _ = _run(tmp_path, FRIDGE, *args)
    assert code == 2
    assert out == ""


def test_time_formats() -> None:
    assert parse_time("1763899200") == T_1200
    assert parse_time("1763899200.25") == T_1200 + 0.25
    assert parse_time("2025-11-23T12:00:00Z") == T_1200
    assert parse_time("2025-11-23T13:00:00+01:00") == T_1200
    assert parse_time("2025-11-23 12:00:00") == T_1200  # no offset: UTC
    assert parse_time("yesterday") is None
    assert parse_time("nan") is None


def test_loader_keeps_faults_as_nan_and_sorts_stably() -> None:
    loaded = load_csv(["5,a,1\n", "3,a,\n", "5,a,2\n", "4,b,7\n"])
    assert loaded.series["a"].times.tolist() == [3.0, 5.0, 5.0]
    assert str(loaded.series["a"].values.tolist()) == "[nan, 1.0, 2.0]"
    assert loaded.series["b"].values.tolist() == [7.0]
    assert loaded.rejected == []


def test_installed_command_runs_replay(tmp_path: Path) -> None:
    path = tmp_path / "series.csv"
    path.write_text(FRIDGE)
    proc = subprocess.run(
        [sys.executable, "-m", "thermowatch.cli", "replay", str(path), "--high-c", "8", "--json"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert [json.loads(line)["kind"] for line in proc.stdout.splitlines()] == [
        "threshold_high",
        "threshold_clear",
    ]
