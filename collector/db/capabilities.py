"""What the connected TimescaleDB can do: the Apache edition has hypertables and ``time_bucket``;
the Timescale-licensed edition adds compression, continuous aggregates and retention policies."""

from __future__ import annotations

from dataclasses import dataclass

import psycopg


@dataclass(frozen=True, slots=True)
class Capabilities:
    license: str  # "apache" or "timescale"
    continuous_aggregates: bool  # the 1-minute and 1-hour views exist and may be queried

    @property
    def full_edition(self) -> bool:
        return self.license == "timescale"


def detect(conn: psycopg.Connection) -> Capabilities:
    lic_row = conn.execute("SHOW timescaledb.license").fetchone()
    license_ = str(lic_row[0]) if lic_row else "apache"
    caggs = conn.execute(
        "SELECT count(*) FROM timescaledb_information.continuous_aggregates "
        "WHERE view_name IN ('readings_1m', 'readings_1h')"
    ).fetchone()
    return Capabilities(license=license_, continuous_aggregates=bool(caggs and caggs[0] == 2))
