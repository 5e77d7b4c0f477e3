#!/usr/bin/env bash
# Idempotent set-up for a fresh Debian/Ubuntu machine: system packages, TimescaleDB for the
# installed PostgreSQL, the MicroPython unix port, and the project's virtual environment.
# Every step checks first and does nothing when its result is already present, so a second
# run is quick and changes nothing.
#
# Mirrors are read from the machine's own apt configuration: no package host is named here.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${THERMOWATCH_CACHE:-$ROOT/.cache}"
VENV="$ROOT/.venv"
MICROPYTHON_VERSION_WANTED="1.25"
mkdir -p "$CACHE"

log() { printf '[setup] %s\n' "$*"; }
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

# --- system packages --------------------------------------------------------------------
PG_MAJOR="$(pg_config --version 2>/dev/null | sed -E 's/^PostgreSQL ([0-9]+).*/\1/' || true)"
if [ -z "$PG_MAJOR" ]; then
  PG_MAJOR="$(ls /etc/postgresql 2>/dev/null | sort -n | tail -1 || true)"
fi
want_pkgs=(mosquitto mosquitto-clients cmake dpkg-dev libffi-dev pkg-config build-essential xz-utils)
if [ -z "$PG_MAJOR" ]; then
  want_pkgs+=(postgresql)
else
  want_pkgs+=("postgresql-$PG_MAJOR" "postgresql-server-dev-$PG_MAJOR")
fi
missing=()
for p in "${want_pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  log "installing system packages: ${missing[*]}"
  $SUDO apt-get update -qq || true
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
if [ -z "$PG_MAJOR" ]; then
  PG_MAJOR="$(ls /etc/postgresql | sort -n | tail -1)"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "postgresql-server-dev-$PG_MAJOR"
fi
PG_CTL_CLUSTER=(pg_ctlcluster --skip-systemctl-redirect "$PG_MAJOR" main)

# --- a private apt source for packages newer than this release (read from apt's own config) --
mirror_uri() {
  local uri=""
  if ls /etc/apt/sources.list.d/*.sources >/dev/null 2>&1; then
    uri="$(grep -h -E '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}' | grep -v -- '-security' | head -1)"
  fi
  if [ -z "$uri" ] && [ -f /etc/apt/sources.list ]; then
    uri="$(grep -E '^deb ' /etc/apt/sources.list | awk '{print $2}' | grep -v -- '-security' | head -1)"
  fi
  printf '%s' "$uri"
}

fetch_source() {  # fetch_source PACKAGE SUITE DESTDIR: a Debian source package into DESTDIR
  local pkg="$1" suite="$2" dest="$3" apt_dir="$CACHE/apt-$2"
  mkdir -p "$apt_dir/lists/partial" "$dest"
  local uri; uri="$(mirror_uri)"
  [ -n "$uri" ] || { echo "no apt mirror found in the apt configuration" >&2; exit 1; }
  printf 'deb-src %s %s main\n' "$uri" "$suite" > "$apt_dir/sources.list"
  local opts=(-o "Dir::Etc::SourceList=$apt_dir/sources.list" -o "Dir::Etc::SourceParts=/dev/null"
              -o "Dir::State::Lists=$apt_dir/lists" -o "APT::Sandbox::User=root")
  if [ -z "$(ls "$apt_dir/lists" 2>/dev/null | grep -v partial)" ]; then
    apt-get "${opts[@]}" update -qq
  fi
  (cd "$dest" && apt-get "${opts[@]}" source --download-only "$pkg" -qq)
}

# --- PostgreSQL running ---------------------------------------------------------------------
pg_up() { pg_isready -q -h 127.0.0.1 -p "${PGPORT:-5432}"; }
if ! pg_up; then
  log "starting PostgreSQL $PG_MAJOR"
  $SUDO "${PG_CTL_CLUSTER[@]}" start || true
  for _ in $(seq 30); do pg_up && break; sleep 1; done
fi

# --- TimescaleDB ------------------------------------------------------------------------------
PG_LIBDIR="$(pg_config --pkglibdir)"
PG_SHAREDIR="$(pg_config --sharedir)"
if ! ls "$PG_SHAREDIR"/extension/timescaledb.control >/dev/null 2>&1; then
  # Prefer a binary package where the distribution has one.
  if apt-cache show "timescaledb-2-postgresql-$PG_MAJOR" >/dev/null 2>&1; then
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "timescaledb-2-postgresql-$PG_MAJOR"
  elif apt-cache show "postgresql-$PG_MAJOR-timescaledb" >/dev/null 2>&1; then
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "postgresql-$PG_MAJOR-timescaledb"
  else
    log "building TimescaleDB (Apache edition) from the Debian source package"
    src="$CACHE/timescaledb-src"
    if ! ls "$src"/timescaledb_*.orig.tar.* >/dev/null 2>&1; then
      fetch_source timescaledb trixie "$src"
    fi
    build="$CACHE/timescaledb-build"
    rm -rf "$build"; mkdir -p "$build"
    tar -xf "$(ls "$src"/timescaledb_*.orig.tar.* | head -1)" -C "$build" --strip-components=1
    (cd "$build" && ./bootstrap -DAPACHE_ONLY=1 -DREGRESS_CHECKS=OFF -DTAP_CHECKS=OFF \
        -DWARNINGS_AS_ERRORS=OFF -DPG_CONFIG="$(command -v pg_config)" >/dev/null \
      && make -C build -j"$(nproc)" >/dev/null && $SUDO make -C build install >/dev/null)
  fi
fi
CONF_D="/etc/postgresql/$PG_MAJOR/main/conf.d"
PRELOAD_CONF="$CONF_D/50-timescaledb.conf"
if ! psql -h 127.0.0.1 -U postgres -d postgres -tAc "SHOW shared_preload_libraries" 2>/dev/null | grep -q timescaledb; then
  log "enabling timescaledb in shared_preload_libraries and restarting PostgreSQL"
  $SUDO mkdir -p "$CONF_D"
  printf "shared_preload_libraries = 'timescaledb'\ntimescaledb.telemetry_level = off\n" | $SUDO tee "$PRELOAD_CONF" >/dev/null
  $SUDO "${PG_CTL_CLUSTER[@]}" restart
  for _ in $(seq 30); do pg_up && break; sleep 1; done
fi

# --- MicroPython unix port (built once into the cache) ----------------------------------------
MP_BIN="$CACHE/micropython/micropython"
if [ ! -x "$MP_BIN" ] || [ ! -x "$CACHE/micropython/mpy-cross" ]; then
  log "building the MicroPython unix port"
  src="$CACHE/micropython-src"
  if ! ls "$src"/micropython_*.dsc >/dev/null 2>&1; then
    fetch_source micropython trixie "$src"
  fi
  tree="$CACHE/micropython-tree"
  rm -rf "$tree"
  (cd "$src" && dpkg-source --no-check -x "$(ls micropython_*.dsc | head -1)" "$tree" >/dev/null)
  manifest="$CACHE/micropython-manifest.py"
  echo 'include("$(MPY_DIR)/extmod/asyncio")' > "$manifest"
  make -C "$tree/mpy-cross" -j"$(nproc)" >/dev/null
  make -C "$tree/ports/unix" -j"$(nproc)" FROZEN_MANIFEST="$manifest" \
    MICROPY_SSL_MBEDTLS=0 MICROPY_PY_SSL=0 MICROPY_PY_BTREE=0 >/dev/null
  mkdir -p "$CACHE/micropython"
  cp "$tree/ports/unix/build-standard/micropython" "$CACHE/micropython/micropython"
  cp "$tree/mpy-cross/build/mpy-cross" "$CACHE/micropython/mpy-cross"
  rm -rf "$tree"
fi

# --- virtual environment --------------------------------------------------------------------
stamp="$VENV/.installed-$(sha256sum "$ROOT/pyproject.toml" | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  log "creating the virtual environment"
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip >"$CACHE/pip.log" 2>&1
  "$VENV/bin/python" -m pip install -q -e "$ROOT[dev]" >>"$CACHE/pip.log" 2>&1 || { cat "$CACHE/pip.log"; exit 1; }
  rm -f "$VENV"/.installed-*
  touch "$stamp"
fi
log "ready (PostgreSQL $PG_MAJOR with TimescaleDB, Mosquitto, MicroPython at .cache/micropython)"
