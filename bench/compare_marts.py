"""Compare every mart table of two warehouses (a refactor's before and after run).

    python bench/compare_marts.py BEFORE.duckdb AFTER.duckdb [--rtol 1e-9] [--ignore COL ...]

Per table: row counts, then rows matched on their non-numeric columns and
compared value by value (numbers within `rtol`, the rest exactly). Version
columns (`*model_version*`, `data_version`, `config_hash`) may differ by code
version: each must map one to one between the runs, and is then compared
through that mapping. Timing columns (`materialized_at`, `*_seconds`, timings
inside JSON) are left out. Prints one line per table and, for tables that
differ, the columns that do with their largest absolute and relative
difference. Exit status 0 when every table matches.
"""

from __future__ import annotations

import argparse
import json
import sys

import duckdb
import numpy as np
import pandas as pd

VOLATILE = {"materialized_at", "fit_seconds", "stage_seconds", "sampler_stats", "published_at", "run_id",
            "rendered_at", "generated_at"}
TIMING_KEYS = ("seconds", "us_per_", "runtime", "_at")


def tables(con) -> list[str]:
    return [t for (t,) in con.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'marts' "
        "AND table_type = 'BASE TABLE' ORDER BY 1").fetchall()]


def is_version(col: str) -> bool:
    return "model_version" in col or col in ("data_version", "config_hash")


def scrub_json(v):
    """JSON text without timing keys, so diagnostics blobs compare on their content."""
    if not isinstance(v, str) or not v[:1] in "{[":
        return v
    try:
        obj = json.loads(v)
    except ValueError:
        return v

    def clean(o):
        if isinstance(o, dict):
            return {k: clean(x) for k, x in o.items() if not any(t in k for t in TIMING_KEYS)}
        if isinstance(o, list):
            return [clean(x) for x in o]
        return o
    return json.dumps(clean(obj), sort_keys=True)


def version_map(a: pd.DataFrame, b: pd.DataFrame, cols: list[str]) -> tuple[dict, list[str]]:
    """before -> after value of every version column (rows in the same order after sorting on the rest)."""
    mapping, problems = {}, []
    for c in cols:
        pairs = set(zip(a[c].astype(str), b[c].astype(str)))
        fwd, back = {}, {}
        for x, y in pairs:
            fwd.setdefault(x, set()).add(y)
            back.setdefault(y, set()).add(x)
        if any(len(v) > 1 for v in fwd.values()) or any(len(v) > 1 for v in back.values()):
            problems.append(f"{c}: not one to one")
        mapping.update({x: next(iter(y)) for x, y in fwd.items()})
    return mapping, problems


def compare(before: str, after: str, rtol: float, ignore: set[str]) -> bool:
    ca, cb = duckdb.connect(before, read_only=True), duckdb.connect(after, read_only=True)
    ta, tb = tables(ca), tables(cb)
    ok = True
    if ta != tb:
        print(f"tables differ: only before {sorted(set(ta) - set(tb))}, only after {sorted(set(tb) - set(ta))}")
        ok = False
    for t in [t for t in ta if t in tb]:
        a, b = ca.execute(f"SELECT * FROM marts.{t}").df(), cb.execute(f"SELECT * FROM marts.{t}").df()
        drop = [c for c in a.columns if c in VOLATILE | ignore or c.endswith("_seconds")]
        a, b = a.drop(columns=drop, errors="ignore"), b.drop(columns=drop, errors="ignore")
        if list(a.columns) != list(b.columns) or len(a) != len(b):
            print(f"{t}: shape {a.shape} vs {b.shape}, columns equal {list(a.columns) == list(b.columns)}")
            ok = False
            continue
        for df in (a, b):
            for c in df.columns:
                if df[c].dtype == object:
                    df[c] = df[c].map(scrub_json)
        num = [c for c in a.columns if pd.api.types.is_float_dtype(a[c])]
        vers = [c for c in a.columns if is_version(c)]
        keys = [c for c in a.columns if c not in num and c not in vers]
        a = a.sort_values(keys + vers, kind="stable").reset_index(drop=True) if keys else a
        b = b.sort_values(keys + vers, kind="stable").reset_index(drop=True) if keys else b
        mapping, problems = version_map(a, b, vers)
        diffs = list(problems)
        for c in keys:
            if not a[c].astype(str).equals(b[c].astype(str)):
                diffs.append(f"{c}: {int((a[c].astype(str) != b[c].astype(str)).sum())} values differ")
        worst = []
        for c in num:
            x, y = a[c].to_numpy(float), b[c].to_numpy(float)
            both_nan = np.isnan(x) & np.isnan(y)
            close = np.isclose(x, y, rtol=rtol, atol=0) | both_nan | (x == y)
            if not close.all():
                d = np.abs(x - y)[~close]
                rel = (np.abs(x - y) / np.maximum(np.abs(x), 1e-300))[~close]
                diffs.append(f"{c}: {int((~close).sum())}/{len(x)} beyond rtol {rtol:g} "
                             f"(max abs {np.nanmax(d):.3g}, max rel {np.nanmax(rel):.3g})")
            with np.errstate(invalid="ignore", divide="ignore"):
                r = np.abs(x - y) / np.maximum(np.abs(x), 1e-300)
            if np.isfinite(r).any():
                worst.append(float(np.nanmax(np.where(both_nan, 0, r))))
        mx = max(worst) if worst else 0.0
        if diffs:
            ok = False
            print(f"{t}: DIFFERS ({len(a)} rows)")
            for d in diffs:
                print(f"    {d}")
        else:
            print(f"{t}: same ({len(a)} rows, {len(num)} numeric columns, max rel diff {mx:.2g}"
                  f"{', versions mapped 1:1' if vers else ''})")
    return ok


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("before")
    p.add_argument("after")
    p.add_argument("--rtol", type=float, default=1e-9)
    p.add_argument("--ignore", nargs="*", default=[])
    args = p.parse_args(argv)
    return 0 if compare(args.before, args.after, args.rtol, set(args.ignore)) else 1


if __name__ == "__main__":
    sys.exit(main())
