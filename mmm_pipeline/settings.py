"""Run settings (environment) and dataset settings (`pipeline.yaml`).

Environment variables choose *where* things are; `pipeline.yaml` in the input
folder says *what* the dataset means. Both are validated here so a bad value
fails with a message that names the setting.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import duckdb
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

PROJECT_ROOT = Path(__file__).resolve().parents[1]

ENV_DEFAULTS = {
    "MMM_INPUT_DIR": "data/sample",
    "MMM_WAREHOUSE": "data/warehouse.duckdb",
    "MMM_ARTIFACT_DIR": "data/artifacts",
    "MMM_PROFILE": "full",
}
PROFILES = ("full", "fast")


class ConfigError(ValueError):
    """A setting is missing or invalid; the message names the setting."""


def _resolve(path: str) -> Path:
    p = Path(path).expanduser()
    return p if p.is_absolute() else (PROJECT_ROOT / p)


@dataclass(frozen=True)
class RunSettings:
    input_dir: Path
    warehouse: Path
    artifact_dir: Path
    profile: str
    # Optional: also publish the marts as Parquet files under this folder or object-store prefix.
    parquet_export: str | None = None
    # Optional: the Dagster UI's address (http://127.0.0.1:3000); the reports' index links each run there.
    dagster_ui_url: str | None = None

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> "RunSettings":
        env = os.environ if env is None else env
        values = {k: env.get(k) or default for k, default in ENV_DEFAULTS.items()}
        if values["MMM_PROFILE"] not in PROFILES:
            raise ConfigError(
                f"MMM_PROFILE={values['MMM_PROFILE']!r} is not a profile; use one of {PROFILES}"
            )
        return cls(
            input_dir=_resolve(values["MMM_INPUT_DIR"]),
            warehouse=_resolve(values["MMM_WAREHOUSE"]),
            artifact_dir=_resolve(values["MMM_ARTIFACT_DIR"]),
            profile=values["MMM_PROFILE"],
            parquet_export=env.get("MMM_PARQUET_EXPORT") or None,
            dagster_ui_url=dagster_ui_url(env.get("MMM_DAGSTER_UI_URL")),
        )


def dagster_ui_url(value: str | None) -> str | None:
    """MMM_DAGSTER_UI_URL without its trailing slash (runs are `<url>/runs/<run_id>`); None when unset."""
    value = (value or "").strip()
    if not value:
        return None
    if not re.match(r"^https?://[^\s/]+", value):
        raise ConfigError(f"MMM_DAGSTER_UI_URL={value!r} is not an http(s) address of the Dagster UI "
                          "(e.g. http://127.0.0.1:3000)")
    return value.rstrip("/")


class CostPerUnitSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # Weeks on each side whose spend-weighted rate fills a zero-unit or zero-spend week.
    imputation_window_weeks: int = Field(4, ge=1, le=52)
    # Trailing complete weeks whose spend-weighted rate is the forecast's level.
    forecast_trailing_weeks: int = Field(8, ge=1, le=52)


class LiftTestSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # x (the level a test adds to): mean weekly units over `baseline_weeks` before the
    # start ("pre_period", the default), or the window's own units less delta_x ("window").
    baseline: Literal["pre_period", "window"] = "pre_period"
    baseline_weeks: int = Field(8, ge=1, le=52)
    national_sigma_split: Literal["proportional", "sqrt_share"] = "proportional"
    # A national test in one market of several: sd of the log ROAS ratio between this market and
    # the others, the uncertainty of splitting the readout by spend share (0: the plain split).
    national_split_log_sd: float = Field(0.5, ge=0, le=5)
    # How the calibrated model of each market gets its part of such a test: by spend share (widened
    # as above), or by the uncalibrated models' predicted lifts (mmm_pipeline.model.national_split;
    # over 20 test x seed pairs its shares missed the truth by 0.103 on average, the spend split's by
    # 0.045: bench/README.md, "A national test shared by markets").
    national_split: Literal["spend_share", "predicted_lift"] = "spend_share"

    def conversion_kwargs(self) -> dict:
        """The settings `lift_tests.convert_lift_tests` takes (the split by predicted lift comes later)."""
        return self.model_dump(exclude={"national_split"})


class IngestSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # A metric cell above this (absolute) is quarantined as absurd: no campaign-day buys 1e12
    # impressions, and a 1e308 would overflow every sum downstream.
    max_metric_value: float = Field(1e12, gt=0)
    # One load may retire at most this share of a folder's loaded files; more looks like an
    # unmounted or half-copied share, and needs this raised on purpose (1.0 allows everything).
    max_retired_share: float = Field(0.5, ge=0, le=1)
    # Seconds one campaign_pattern may spend on one campaign name (catastrophic backtracking).
    pattern_timeout_seconds: float = Field(1.0, gt=0, le=60)
    # A platform whose ad-reporting rows fall by more than this share of its last accepted load
    # fails a blocking check: an export that comes back half-empty would silently shrink channels.
    max_row_drop_share: float = Field(0.5, ge=0, le=1)
    # Files (paths relative to the input folder) emptied or removed on purpose: they are left out
    # of the emptied-file and row-drop checks, which otherwise fail until the rows come back.
    retired_files: list[str] = Field(default_factory=list)

    @field_validator("retired_files")
    @classmethod
    def _relative_paths(cls, v: list[str]) -> list[str]:
        out: list[str] = []
        for raw in v:
            path = str(raw).strip().replace("\\", "/")
            while path.startswith("./"):
                path = path[2:]
            parts = path.split("/")
            if not path or path.startswith("/") or ":" in parts[0] or ".." in parts or "" in parts:
                raise ValueError(f"{raw!r} is not a path relative to the input folder "
                                 "(e.g. ad_reporting/google_ads.csv)")
            if path not in out:
                out.append(path)
        return out

    # Date formats a file may use besides ISO (`YYYY-MM-DD`, ISO timestamps at midnight): file path
    # relative to the input folder (fnmatch globs: `ad_reporting/*.csv`) -> strptime formats tried
    # in order (`["%m/%d/%Y"]`). Nothing is ever guessed: other values are quarantined.
    date_formats: dict[str, list[str]] = Field(default_factory=dict)

    @field_validator("date_formats", mode="before")
    @classmethod
    def _one_format_is_a_list(cls, v):
        if isinstance(v, dict):
            return {k: [f] if isinstance(f, str) else f for k, f in v.items()}
        return v

    @field_validator("date_formats")
    @classmethod
    def _date_formats_valid(cls, v):
        con = duckdb.connect()  # DuckDB's own strptime judges the format, as ingestion will use it
        try:
            for pattern, formats in v.items():
                where = f"ingest.date_formats[{pattern!r}]"
                if not pattern.strip():
                    raise ValueError("a file pattern is empty (give a path relative to the input folder)")
                if not formats:
                    raise ValueError(f"{where} lists no format (e.g. ['%m/%d/%Y'])")
                for fmt in formats:
                    if re.search(r"%-?[zZ]", fmt):
                        raise ValueError(f"{where}: {fmt!r} has a time zone (%z/%Z); ISO timestamps with an "
                                         "offset are accepted without declaring a format")
                    try:
                        con.execute("SELECT try_strptime('', $f)", {"f": [fmt]})
                    except duckdb.Error as exc:
                        raise ValueError(f"{where}: {fmt!r} is not a valid strptime format ({exc})") from None
                    parts = {"year": r"%-?[Yy]", "month": r"%-?[mbBhj]", "day": r"%-?[dj]"}
                    missing = [p for p, rx in parts.items() if not re.search(rx, fmt)]
                    if missing:
                        raise ValueError(f"{where}: {fmt!r} has no {' or '.join(missing)} directive "
                                         "(a date format needs a year, a month and a day, e.g. '%m/%d/%Y')")
        finally:
            con.close()
        return v


class PipelineConfig(BaseModel):
    """Dataset settings read from `<input>/pipeline.yaml` (every key optional, unknown keys fail)."""

    model_config = ConfigDict(extra="forbid")

    kpi_column: str | None = None
    reporting_currency: str | None = None
    markets: dict[str, list[str]] | None = None
    planning_horizon_weeks: int = Field(8, ge=1, le=104)
    # A plan moves a cell, and a budget-neutral plan leaves the current mix, only with at least this
    # posterior probability of gaining (0 takes the optimizer's plan as it is).
    plan_min_probability_of_gain: float = Field(0.9, ge=0, lt=1)
    # What the default plan's optimizer maximises over the posterior draws (allocation.Scenario.utility):
    # `mean`, `cvar` or `mean_tightness`, at `plan_utility_confidence` (docs/decisions.md "Utility").
    plan_utility: Literal["mean", "cvar", "mean_tightness"] = "mean"
    plan_utility_confidence: float = Field(0.9, gt=0.5, lt=1)
    # Warn when the newest ad-reporting or KPI day is older than this many days.
    freshness_days: int = Field(8, ge=1, le=3650)
    geo_weights: dict[str, float] | None = None
    scenarios: list[dict] | None = None
    cost_per_unit: CostPerUnitSettings = CostPerUnitSettings()
    lift_tests: LiftTestSettings = LiftTestSettings()
    ingest: IngestSettings = IngestSettings()
    # How a control column's days make its week (controls/*.csv|parquet): `mean` (the default:
    # a price, a temperature) or `sum` (promotion days, store openings).
    controls: dict[str, Literal["mean", "sum"]] = Field(default_factory=dict)
    model: dict | None = None

    @field_validator("geo_weights")
    @classmethod
    def _weights_positive(cls, v):
        if v is not None:
            bad = {g: w for g, w in v.items() if not (isinstance(w, (int, float)) and w > 0)}
            if bad:
                raise ValueError(f"weights must be positive numbers, got {bad}")
        return v

    @field_validator("markets")
    @classmethod
    def _markets_disjoint(cls, v):
        if v is not None:
            seen: dict[str, str] = {}
            for market, geos in v.items():
                if not geos:
                    raise ValueError(f"market {market!r} lists no geos")
                for g in geos:
                    if g in seen:
                        raise ValueError(f"geo {g!r} is in markets {seen[g]!r} and {market!r}")
                    seen[g] = market
        return v


def load_pipeline_config(input_dir: Path) -> tuple[PipelineConfig, str]:
    """Return the dataset config and a hash of the file's bytes ('' when absent)."""
    path = Path(input_dir) / "pipeline.yaml"
    if not path.exists():
        return PipelineConfig(), ""
    raw = path.read_bytes()
    try:
        data = yaml.safe_load(raw) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of settings, got {type(data).__name__}")
    try:
        return PipelineConfig.model_validate(data), hashlib.sha256(raw).hexdigest()
    except ValidationError as exc:
        problems = "; ".join(_describe(err) for err in exc.errors())
        raise ConfigError(f"{path}: invalid setting(s): {problems}") from exc


# Settings that only the model, the plans or the freshness check read: a change to them must not
# re-version the weekly staging data (which would refit every model of every market). The
# source-volume check's settings (ingest.retired_files, max_row_drop_share) change no row either.
NOT_STAGING_SETTINGS = {**dict.fromkeys(("model", "planning_horizon_weeks", "plan_min_probability_of_gain",
                                         "plan_utility", "plan_utility_confidence",
                                         "scenarios", "freshness_days", "lift_tests"), True),
                        "ingest": {"retired_files": True, "max_row_drop_share": True}}


def settings_hash(config: PipelineConfig, *, include: set[str] | None = None,
                  exclude: set[str] | frozenset[str] | dict | None = None) -> str:
    """Fingerprint of the parsed settings one stage reads (``include``), or of all but ``exclude``.

    Each stage versions its data with the settings it depends on, so for example turning on
    ``model.strict_gates`` or changing the planning horizon refits nothing."""
    from mmm_pipeline.warehouse import fingerprint

    return fingerprint(config.model_dump(mode="json", include=include, exclude=exclude))


def _describe(err: dict) -> str:
    where = ".".join(str(p) for p in err["loc"])
    if err["type"] != "extra_forbidden":
        return f"{where}: {err['msg']}"
    model = PipelineConfig
    for part in err["loc"][:-1]:  # walk to the settings block that holds the unknown key
        field = model.model_fields.get(str(part))
        model = getattr(field, "annotation", None) if field else None
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return f"{where}: unknown key"
    valid = sorted(model.model_fields)
    close = difflib.get_close_matches(str(err["loc"][-1]), valid, n=1)
    hint = f"did you mean {close[0]!r}?" if close else f"valid keys: {', '.join(valid)}"
    return f"{where}: unknown key ({hint})"


def check_input_dir(input_dir: Path) -> None:
    if not Path(input_dir).is_dir():
        raise ConfigError(
            f"MMM_INPUT_DIR={input_dir} does not exist or is not a folder "
            "(run `make sample` for the embedded sample, or point MMM_INPUT_DIR at your data)"
        )


def check_writable(path: Path, setting: str, *, is_folder: bool) -> None:
    """Fail with the setting's name when `path` (a file, or a folder) cannot be written.

    Tries it for real (create the folder, write and remove a probe file), since
    permission bits say nothing for root or for read-only mounts.
    """
    path = Path(path)
    folder = path if is_folder else path.parent
    try:
        if path.exists() and (path.is_dir() != is_folder):
            raise OSError(f"it is a {'folder' if path.is_dir() else 'file'}")
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".mmm-write-probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
        if not is_folder and path.exists():
            with open(path, "r+b"):
                pass
    except OSError as exc:
        what = "folder" if is_folder else "file"
        blocking_file = next((p for p in [folder, *folder.parents] if p.exists() and not p.is_dir()), None)
        reason = f"{blocking_file} is a file, not a folder" if blocking_file else (exc.strerror or str(exc))
        raise ConfigError(
            f"{setting}={path} is not a writable {what}: {reason} "
            f"(point {setting} at a {what} this process can write)"
        ) from exc


DEFAULT_MARKET = "all"


def market_geos(config: PipelineConfig, geos: list[str]) -> dict[str, list[str]]:
    """Market -> its geos present in the data (default: one market `all` of every geo).

    National data (one geo, `national`) is one market whatever pipeline.yaml says.
    """
    if not config.markets or geos == ["national"]:
        return {DEFAULT_MARKET: list(geos)}
    unknown = sorted({g for gs in config.markets.values() for g in gs} - set(geos))
    if unknown:
        raise ConfigError(f"pipeline.yaml markets: geo(s) {unknown} are not in the data (geos: {geos})")
    return {m: [g for g in gs if g in geos] for m, gs in config.markets.items()}


def market_names(input_dir: Path) -> list[str]:
    """Markets for the partition definition, read from pipeline.yaml (no data needed)."""
    try:
        config, _ = load_pipeline_config(Path(input_dir))
    except (ConfigError, OSError):
        return [DEFAULT_MARKET]
    return list(config.markets) if config.markets else [DEFAULT_MARKET]
