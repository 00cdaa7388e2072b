"""Source volume: a file that empties, or an ad platform whose rows collapse, between loads.

:func:`load_files` records, inside each load's transaction, the rows of every file of the kind
(per ad-reporting platform, with the channels they fed) before and after the load in
``raw.source_volume``. :func:`source_volume_findings` replays that history and returns what the
blocking ``*_source_volume`` checks report:

- a file that had rows the last time it had any and has none now (every kind loaded by
  ``load_files``), or, for the kinds without platforms (KPI, controls, lift tests), that was
  removed from the folder;
- an ad-reporting platform whose rows fell by more than ``ingest.max_row_drop_share`` of its last
  accepted level (the platform's rows after its last load that did not fail this rule), so the
  finding persists over reruns and over loads of other platforms until the rows come back. A
  file removed from the folder counts here (its platform's rows drop).

Files listed under ``ingest.retired_files`` are left out of both rules (and of the platform
totals on both sides of the comparison).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from itertools import groupby
from typing import TYPE_CHECKING, Iterable

import duckdb

from mmm_pipeline.warehouse import quote_ident

if TYPE_CHECKING:
    from mmm_pipeline.ingestion.load import TableSpec
    from mmm_pipeline.settings import IngestSettings

#: (source_file, platform) -> (rows, channels)
Counts = dict[tuple[str, str], tuple[int, list[str]]]

RETIRE_HINT = "If the file was retired on purpose, list it under pipeline.yaml ingest.retired_files"


def table_counts(con: duckdb.DuckDBPyConnection, spec: "TableSpec") -> Counts:
    """Rows of `spec.table` per file (and platform, where the spec names the column)."""
    platform = f"coalesce({quote_ident(spec.volume_platform)}, '')" if spec.volume_platform else "''"
    if spec.volume_channel:
        ch = quote_ident(spec.volume_channel)
        channels = f"list_sort(list(DISTINCT {ch}) FILTER (WHERE {ch} IS NOT NULL))"
    else:
        channels = "CAST([] AS VARCHAR[])"
    rows = con.execute(
        f"SELECT source_file, {platform}, count(*), {channels} FROM {spec.table} GROUP BY 1, 2"
    ).fetchall()
    return {(f, p): (n, list(ch or [])) for f, p, n, ch in rows}


def record_volume(con: duckdb.DuckDBPyConnection, spec: "TableSpec", before: Counts, status: dict[str, str],
                  logged_at: datetime, run_id: str | None) -> None:
    """Log the rows of every file of the kind before and after this load (inside its transaction).

    `status`: file -> loaded | unchanged | retired, for every file of the kind in this load. A file
    without rows on either side gets one row with platform ''."""
    after = table_counts(con, spec)
    before = dict(before)
    with_rows = {f for f, _ in set(before) | set(after)}
    for f in status:
        if f not in with_rows:
            before[(f, "")] = (0, [])
    empty: tuple[int, list[str]] = (0, [])
    records = []
    for f, p in sorted(set(before) | set(after)):
        (n_before, ch_before), (n_after, ch_after) = before.get((f, p), empty), after.get((f, p), empty)
        records.append((spec.kind, f, p, status.get(f, "unchanged"), n_before, n_after, ch_before, ch_after,
                        logged_at, run_id))
    con.executemany("INSERT INTO raw.source_volume VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", records)


# --------------------------------------------------------------------------
# Findings


@dataclass
class VolumeFinding:
    """One file (and platform) behind a failing source-volume rule."""

    kind: str
    source_file: str
    platform: str                     # '' for kinds without platforms
    rows_before: int                  # the file's rows (of this platform) at the reference load
    rows_after: int                   # ... and now
    channels: list[str] = field(default_factory=list)   # the channels those rows fed
    file_emptied: bool = False        # the file is in the folder with no rows
    file_gone: bool = False           # the file was removed from the folder
    platform_rows_before: int | None = None   # set when the platform rule failed
    platform_rows_after: int | None = None
    file_rows_before: int = 0         # the whole file (every platform), for the message
    max_row_drop_share: float = 0.5
    message: str = ""

    @property
    def platform_drop_share(self) -> float | None:
        if self.platform_rows_before is None or not self.platform_rows_before:
            return None
        return (self.platform_rows_before - self.platform_rows_after) / self.platform_rows_before

    def as_record(self) -> dict:
        return {
            "kind": self.kind, "source_file": self.source_file, "platform": self.platform,
            "rows_before": self.rows_before, "rows_after": self.rows_after,
            "platform_rows_before": self.platform_rows_before, "platform_rows_after": self.platform_rows_after,
            "channels": ", ".join(self.channels), "message": self.message,
        }


def _pct(share: float) -> str:
    return f"{share:.1%}".replace(".0%", "%")


def _describe(f: VolumeFinding) -> str:
    parts = []
    if f.file_emptied:
        parts.append(f"{f.source_file} had {f.file_rows_before:,} rows in the last load and has 0 now")
    elif f.file_gone:
        parts.append(f"{f.source_file} was removed from the input folder ({f.file_rows_before:,} rows in the "
                     "last load)")
    else:
        parts.append(f"{f.source_file} went from {f.rows_before:,} to {f.rows_after:,} {f.platform} rows")
    share = f.platform_drop_share
    if share is not None:
        parts.append(f"platform {f.platform} dropped from {f.platform_rows_before:,} to {f.platform_rows_after:,} "
                     f"rows ({_pct(share)} > ingest.max_row_drop_share {_pct(f.max_row_drop_share)})")
    if f.channels:
        parts.append(f"it fed channel{'s' if len(f.channels) > 1 else ''} {', '.join(f.channels)}")
    return "; ".join(parts) + ". " + RETIRE_HINT


@dataclass
class _Snapshot:
    """One load of a kind: per file its status and per platform (rows, channels) before and after."""

    status: dict[str, str] = field(default_factory=dict)
    before: dict[str, dict[str, tuple[int, list[str]]]] = field(default_factory=dict)
    after: dict[str, dict[str, tuple[int, list[str]]]] = field(default_factory=dict)


def _snapshots(con: duckdb.DuckDBPyConnection, kind: str) -> list[_Snapshot]:
    rows = con.execute(
        """SELECT logged_at, source_file, platform, file_status, rows_before, rows_after,
                  channels_before, channels_after
           FROM raw.source_volume WHERE kind = ? ORDER BY logged_at, source_file, platform""",
        [kind],
    ).fetchall()
    out = []
    for _, load in groupby(rows, key=lambda r: r[0]):
        snap = _Snapshot()
        for _, f, p, status, n_before, n_after, ch_before, ch_after in load:
            snap.status[f] = status
            if n_before:
                snap.before.setdefault(f, {})[p] = (n_before, list(ch_before or []))
            if n_after:
                snap.after.setdefault(f, {})[p] = (n_after, list(ch_after or []))
        out.append(snap)
    return out


def _total(by_platform: dict[str, tuple[int, list[str]]] | None) -> int:
    return sum(n for n, _ in (by_platform or {}).values())


def _kind_findings(kind: str, snaps: list[_Snapshot], retired: set[str], share: float) -> list[VolumeFinding]:
    if not snaps:
        return []
    findings: dict[tuple[str, str], VolumeFinding] = {}

    # Rule 1: a file with no rows now that had rows the last time it had any: still in the folder,
    # or (kinds without platforms) removed from it. A removed ad-reporting file is judged by what
    # its platforms lost (rule 2), so moving rows to another file of the platform passes.
    last_rows: dict[str, dict[str, tuple[int, list[str]]]] = {}
    for snap in snaps:
        for f, status in snap.status.items():
            if f in retired:
                continue
            if f not in last_rows and _total(snap.before.get(f)):
                last_rows[f] = snap.before[f]
            if status == "retired" and any(last_rows.get(f, {})):  # rows with a platform
                last_rows.pop(f, None)
            elif _total(snap.after.get(f)):
                last_rows[f] = snap.after[f]
    final = snaps[-1]
    for f, rows in last_rows.items():
        present = final.status.get(f) not in (None, "retired")
        if f in retired or (present and _total(final.after.get(f))):
            continue
        for p, (n, channels) in rows.items():
            findings[(f, p)] = VolumeFinding(kind, f, p, n, 0, channels, file_emptied=present, file_gone=not present,
                                             file_rows_before=_total(rows), max_row_drop_share=share)

    # Rule 2: a platform whose rows fell by more than `share` of its last accepted level.
    def by_platform(side: dict[str, dict[str, tuple[int, list[str]]]]) -> dict[str, dict[str, tuple[int, list[str]]]]:
        out: dict[str, dict[str, tuple[int, list[str]]]] = {}
        for f, per in side.items():
            if f in retired:
                continue
            for p, nc in per.items():
                if p:
                    out.setdefault(p, {})[f] = nc
        return out

    accepted: dict[str, dict[str, tuple[int, list[str]]]] = {}   # platform -> file -> (rows, channels)
    failing: dict[str, dict[str, tuple[int, list[str]]]] = {}    # platform -> its files now
    for snap in snaps:
        before, after = by_platform(snap.before), by_platform(snap.after)
        for p in sorted(set(before) | set(after) | set(accepted)):
            accepted.setdefault(p, before.get(p, {}))
            ref, now = _total(accepted[p]), _total(after.get(p))
            if ref and (ref - now) / ref > share:
                failing[p] = after.get(p, {})
            else:
                accepted[p] = after.get(p, {})
                failing.pop(p, None)
    for p, now_files in failing.items():
        ref_files = accepted[p]
        ref, now = _total(ref_files), _total(now_files)
        for f, (n, channels) in sorted(ref_files.items()):
            n_now = now_files.get(f, (0, []))[0]
            if n_now >= n:
                continue
            found = findings.get((f, p)) or VolumeFinding(
                kind, f, p, n, n_now, channels, file_gone=final.status.get(f) in (None, "retired"),
                file_rows_before=n, max_row_drop_share=share)
            found.platform_rows_before, found.platform_rows_after = ref, now
            findings[(f, p)] = found

    for found in findings.values():
        found.message = _describe(found)
    return [findings[k] for k in sorted(findings)]


def source_volume_findings(con: duckdb.DuckDBPyConnection, limits: "IngestSettings",
                           kinds: Iterable[str] | None = None) -> list[VolumeFinding]:
    """Files emptied and ad platforms collapsed, as the warehouse holds them now (empty: all well).

    `kinds`: the kinds to judge (default every kind in ``raw.source_volume``)."""
    if kinds is None:
        kinds = [k for (k,) in con.execute("SELECT DISTINCT kind FROM raw.source_volume ORDER BY 1").fetchall()]
    retired = set(limits.retired_files)
    return [found for kind in kinds
            for found in _kind_findings(kind, _snapshots(con, kind), retired, limits.max_row_drop_share)]
