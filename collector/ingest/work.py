"""The unit of work that travels from a transport through the pipeline to the writer."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from collector.ingest.validate import Row
from shared.decode import Event

# Set as ``Outcome.error`` when the database refused a batch's content and the writer stored the
# batch whole in ``ingest_rejects`` instead (see ``collector/ingest/writer.py``).
QUARANTINED = "quarantined"


@dataclass(slots=True)
class Reject:
    reason: str
    device_id: str | None
    detail: str | None = None
    record_index: int | None = None
    # What was refused: the payload's bytes, or a record as JSON text. Stored as bytes (bytea),
    # so that any content survives.
    raw: bytes | str | None = None


@dataclass(slots=True)
class Outcome:
    """What happened to one batch; sent back to the device after commit."""

    device_id: str | None
    seq: int | None
    boot_id: str | None
    stored: int = 0
    duplicates: int = 0
    rejected: int = 0
    error: str | None = None  # set when the whole batch was refused (or quarantined)

    @property
    def ackable(self) -> bool:
        return self.device_id is not None and self.seq is not None and self.boot_id is not None


@dataclass(slots=True)
class Work:
    transport: str
    outcome: Outcome
    rows: list[Row] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)
    on_done: Callable[[Outcome], None] | None = None
    # The payload (up to ``reject_raw_max_bytes``), kept in case the database refuses the batch's
    # content and the writer has to quarantine it whole.
    raw: bytes | None = None
