"""No file outside the artifact folder, whatever a channel, geo, market or test id is called.

`mmm_pipeline.paths.safe_name` turns an input value into one file-name component; `path_inside`
(behind `ArtifactStore.path`/`write_bytes`) refuses any path that resolves outside its root.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from mmm_pipeline.paths import path_inside, safe_name

ESCAPE = "social/../../../../ESCAPED"
HOSTILE = ["..", ".", "../../x", "a/b", "a_b", "a\\b", "a\x00b", "/etc/passwd", "x" * 300, "x" * 301,
           "Social", "social", "SOCIAL", "", " ", ESCAPE, "ü", "a b", "-"]
SAFE_COMPONENT = re.compile(r"[a-z0-9_-][a-z0-9._-]{0,79}")


def files_under(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


def test_safe_name_gives_distinct_single_safe_components():
    names = [safe_name(t) for t in HOSTILE]
    for text, name in zip(HOSTILE, names):
        assert SAFE_COMPONENT.fullmatch(name), (text, name)
        assert name not in {".", ".."} and os.sep not in name and "\x00" not in name
    assert len(set(names)) == len(HOSTILE)  # case, `/` vs `_`, long prefixes: no two share a file


def test_safe_name_keeps_plain_names_and_is_stable():
    for plain in ["social", "search", "east", "west", "calibrated", "cost_per_unit_social", "lt-2025-04", "a.b"]:
        assert safe_name(plain) == plain
    assert safe_name("Social") == safe_name("Social") != safe_name("social")
    assert safe_name("x" * 60) == "x" * 60 and safe_name("x" * 61).startswith("x" * 60 + "-")


@pytest.mark.parametrize("parts", [("..", "x"), ("a", "../../x"), ("a/../..",), ("/etc/passwd",), ("a", "/tmp/x"),
                                   ("a\x00b",)])
def test_path_inside_refuses_escapes_and_absolute_parts(tmp_path, parts):
    root = tmp_path / "root"
    with pytest.raises(ValueError, match="root"):
        path_inside(root, *parts)


def test_path_inside_refuses_a_symlink_pointing_outside(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir(), outside.mkdir()
    (root / "link").symlink_to(outside)
    with pytest.raises(ValueError, match="outside the root"):
        path_inside(root, "link", "x.png")
    assert path_inside(root, "a", "..", "b.png") == (root / "b.png").resolve()  # `..` that stays inside is fine


def test_artifact_store_refuses_to_write_outside_its_root(tmp_path):
    from resources import ArtifactStore

    root = tmp_path / "artifacts"
    store = ArtifactStore(root=str(root))
    for bad in ["../x.png", "a/../../x.png", str(tmp_path / "x.png")]:
        with pytest.raises(ValueError, match=str(root.resolve())):
            store.write_bytes(bad, b"png")
    with pytest.raises(ValueError):
        store.path("..", "x.nc")
    assert files_under(tmp_path) == set()
    assert store.write_bytes("a/b.png", b"png") == (root / "a" / "b.png").resolve()


def test_plots_metadata_keeps_hostile_channels_and_markets_inside_the_root(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from assets.metadata import plots_metadata
    from resources import ArtifactStore

    root = tmp_path / "artifacts"
    store = ArtifactStore(root=str(root))
    channels = ["social", "Social", "SOCIAL", ESCAPE, "..", "a/b", "a_b", "a\\b", "a\x00b", "x" * 300, "x" * 301]

    def figures(keys):
        out = {}
        for key in keys:
            fig, _ = plt.subplots(figsize=(1, 1))
            out[key] = fig
        return out

    meta = plots_metadata(store, figures([f"curve_{c}" for c in channels]), ("curves", "../../../market"))
    meta.update(plots_metadata(store, figures(channels), "costs", "cost_per_unit_"))
    written = files_under(root)
    assert files_under(tmp_path) == written  # nothing outside the artifact folder
    assert len(written) == 2 * len(channels)  # no two channels share a file
    paths = {Path(meta[f"plot_{k}_path"].path) for k in [f"curve_{c}" for c in channels] + channels}
    assert paths == written
    assert (root / "costs" / "cost_per_unit_social.png").resolve() in written  # plain names keep their files
    assert {p.parent for p in written} == {(root / "curves" / safe_name("../../../market")).resolve(),
                                           (root / "costs").resolve()}


def test_report_of_a_hostile_market_stays_in_its_folder_and_the_index_links_to_it(tmp_path):
    import json

    from mmm_pipeline.reporting.report import Report, list_reports, write_report

    reports = tmp_path / "artifacts" / "reports"
    rep = Report(market="../../../ESCAPED", model_version="abc123", variant="calibrated", gated=True,
                 html="<html></html>", summary_markdown="", sections=[],
                 headline=dict.fromkeys(["currency", "kpi", "kpi_is_money", "spend", "media_share", "plan_gain"]))
    path = write_report(rep, reports)
    assert path == (reports / safe_name(rep.market) / "abc123.html").resolve()
    assert all(p.is_relative_to(reports.resolve()) for p in files_under(tmp_path))
    (entry,) = list_reports(reports)
    assert entry["market"] == rep.market and (reports / entry["file"]).resolve() == path
    assert json.loads(path.with_suffix(".json").read_text())["file"] == f"{safe_name(rep.market)}/abc123.html"


def test_costs_plots_of_a_hostile_channel_land_under_the_artifact_folder(sample_dir, tmp_path, copy_input):
    """The user's case end to end without a fit: ingest + costs on the sample with `social` renamed."""
    from tests.conftest import materialize

    src = copy_input(sample_dir)
    for name in ["channels.csv", "lift_tests.csv"]:
        f = src / name
        f.write_text(re.sub(r"\bsocial\b", ESCAPE, f.read_text()))
    art = tmp_path / "deep" / "a" / "b" / "artifacts"
    runs = materialize(src, tmp_path / "deep" / "warehouse.duckdb", art, models=False)
    assert runs.success
    # the name's `..` did not climb out (it would have written <tmp_path>/deep/a/ESCAPED.png)
    assert not [p for p in tmp_path.rglob("*") if "escaped" in p.name.lower() and not p.is_relative_to(art)]
    costs = {p.name for p in (art / "costs").glob("*.png")}
    assert {f"{safe_name('cost_per_unit_' + ESCAPE)}.png", "cost_per_unit_search.png"} <= costs
