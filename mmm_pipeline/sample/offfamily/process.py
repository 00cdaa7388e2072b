"""The true media process of a generated dataset, as numbers a benchmark can evaluate any plan with.

One :class:`MediaProcess` describes how each geo x channel turns delivery units into KPI, per
*period* (a day for the daily generators, a week for the notebook's process and the in-family
sample):

    adstocked[t, g, c] = sum_l kernel[g, c, l] * units[t - l, g, c]       (causal, unnormalised allowed)
    contribution[t, g, c] = out_scale[g, c] * sat_c(adstocked[t, g, c] / input_scale[g, c])

Channels are additive and independent (no interactions), so every figure is per geo x channel.
A week's money is spread over its periods by the channel's ``profile`` (share of a week's spend per
period of the week, Monday first; ``[1.0]`` for weekly processes).

Definitions (one per figure; bench/README.md repeats them):

* steady-state weekly response ``R(S)``: the KPI per week once weekly spend ``S`` (money, spread by the
  profile, converted at ``cost_per_unit``) has been sustained long enough that the carryover is
  periodic; with the kernel folded modulo the week it is exact, not simulated;
* mROAS = ``dR/dS`` at the last 13 weeks' mean weekly spend (analytic derivative of the saturation);
* response to +10% = ``(R(1.1 S) - R(S)) * horizon_weeks``;
* the response of a plan (:func:`plan_response`): money per week per cell, held for the horizon's
  weeks (converted at the horizon's true cost per unit, period by period), after the observed
  history (its last ``L`` periods carry in), over the horizon and the kernel's tail after it, minus
  the same with no spend in the horizon (the pipeline's `budget_allocation` definition).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

SATURATIONS = ("hill", "stretched_exp", "logistic")


def saturation(family: str, z: np.ndarray, p: dict[str, np.ndarray]) -> np.ndarray:
    """sat(z) with parameters broadcast against z (z >= 0, in units of input_scale)."""
    z = np.maximum(np.asarray(z, dtype=float), 0.0)
    if family == "hill":  # z^s / (z^s + K^s)
        s, k = p["s"], p["K"]
        zs = np.power(z / k, s)
        return zs / (1.0 + zs)
    if family == "stretched_exp":  # 1 - exp(-(z/K)^rho)
        return 1.0 - np.exp(-np.power(z / p["K"], p["rho"]))
    if family == "logistic":  # pymc-marketing's logistic_saturation: (1 - e^-lam z) / (1 + e^-lam z)
        e = np.exp(-p["lam"] * z)
        return (1.0 - e) / (1.0 + e)
    raise ValueError(f"unknown saturation family {family!r}")


def saturation_slope(family: str, z: np.ndarray, p: dict[str, np.ndarray]) -> np.ndarray:
    """d sat / d z, analytic."""
    z = np.maximum(np.asarray(z, dtype=float), 0.0)
    if family == "hill":
        s, k = p["s"], p["K"]
        r = z / k
        with np.errstate(divide="ignore", invalid="ignore"):
            out = s * np.power(r, s - 1.0) / (k * (1.0 + np.power(r, s)) ** 2)
        return np.where(z > 0, out, np.where(s > 1, 0.0, np.where(s == 1, 1.0 / k, np.inf)))
    if family == "stretched_exp":
        rho, k = p["rho"], p["K"]
        r = z / k
        with np.errstate(divide="ignore", invalid="ignore"):
            out = np.exp(-np.power(r, rho)) * rho / k * np.power(r, rho - 1.0)
        return np.where(z > 0, out, np.inf)
    if family == "logistic":
        lam = p["lam"]
        e = np.exp(-lam * z)
        return 2.0 * lam * e / (1.0 + e) ** 2
    raise ValueError(f"unknown saturation family {family!r}")


@dataclass
class MediaProcess:
    geos: list[str]
    channels: list[str]
    periods_per_week: int                 # 7 (daily) or 1 (weekly)
    profile: np.ndarray                   # (C, periods_per_week): share of a week's money per period
    kernel: np.ndarray                    # (G, C, L): carryover weights, lag 0 first
    family: str                           # saturation family (SATURATIONS)
    params: dict[str, np.ndarray]         # (G, C) each
    input_scale: np.ndarray               # (G, C)
    out_scale: np.ndarray                 # (G, C): KPI per period at sat = 1
    notes: dict[str, Any] = field(default_factory=dict)

    # ------------------------------------------------------------------ (de)serialisation
    def to_json(self) -> dict:
        return {"geos": self.geos, "channels": self.channels, "periods_per_week": self.periods_per_week,
                "profile": self.profile.tolist(), "kernel": self.kernel.tolist(), "family": self.family,
                "params": {k: v.tolist() for k, v in self.params.items()},
                "input_scale": self.input_scale.tolist(), "out_scale": self.out_scale.tolist(),
                "notes": self.notes}

    @classmethod
    def from_json(cls, d: dict) -> "MediaProcess":
        return cls(geos=list(d["geos"]), channels=list(d["channels"]), periods_per_week=int(d["periods_per_week"]),
                   profile=np.asarray(d["profile"], float), kernel=np.asarray(d["kernel"], float),
                   family=d["family"], params={k: np.asarray(v, float) for k, v in d["params"].items()},
                   input_scale=np.asarray(d["input_scale"], float), out_scale=np.asarray(d["out_scale"], float),
                   notes=dict(d.get("notes", {})))

    @property
    def L(self) -> int:
        return int(self.kernel.shape[-1])

    # ------------------------------------------------------------------ paths
    def adstock(self, units: np.ndarray) -> np.ndarray:
        """(T, G, C) units -> (T, G, C) adstocked (no history before t = 0)."""
        x = np.asarray(units, dtype=float)
        out = np.zeros_like(x)
        n = x.shape[0]
        for lag in range(min(self.L, n)):
            out[lag:] += self.kernel[:, :, lag][None] * x[: n - lag]
        return out

    def contributions(self, units: np.ndarray) -> np.ndarray:
        """(T, G, C) KPI per period of each cell on the given unit path."""
        z = self.adstock(units) / self.input_scale[None]
        return self.out_scale[None] * saturation(self.family, z, {k: v[None] for k, v in self.params.items()})

    # ------------------------------------------------------------------ steady state
    def _folded(self) -> np.ndarray:
        """(G, C, P) kernel folded modulo the week: weight of each period-of-week lag."""
        P = self.periods_per_week
        L = self.L
        pad = (-L) % P
        k = np.concatenate([self.kernel, np.zeros(self.kernel.shape[:2] + (pad,))], axis=-1)
        return k.reshape(k.shape[0], k.shape[1], -1, P).sum(axis=2)

    def _steady_z(self, weekly_spend: np.ndarray, cost_per_unit: np.ndarray) -> np.ndarray:
        """(G, C, P) saturation input per period of a week at sustained weekly spend (G, C)."""
        P = self.periods_per_week
        u = (np.asarray(weekly_spend, float) / np.asarray(cost_per_unit, float))[..., None] * self.profile[None]
        kf = self._folded()
        a = np.zeros(u.shape)
        for d in range(P):
            for j in range(P):
                a[..., d] += kf[..., j] * u[..., (d - j) % P]
        return a / self.input_scale[..., None]

    def steady_weekly_response(self, weekly_spend: np.ndarray, cost_per_unit: np.ndarray) -> np.ndarray:
        """(G, C) KPI per week at sustained weekly spend (G, C)."""
        z = self._steady_z(weekly_spend, cost_per_unit)
        p = {k: v[..., None] for k, v in self.params.items()}
        return (self.out_scale[..., None] * saturation(self.family, z, p)).sum(axis=-1)

    def steady_weekly_slope(self, weekly_spend: np.ndarray, cost_per_unit: np.ndarray) -> np.ndarray:
        """(G, C) d(KPI per week) / d(weekly spend) at sustained weekly spend (analytic)."""
        S = np.asarray(weekly_spend, float)
        z = self._steady_z(S, cost_per_unit)
        dz_dS = self._steady_z(np.ones_like(S), cost_per_unit)   # z is linear in S
        p = {k: v[..., None] for k, v in self.params.items()}
        return (self.out_scale[..., None] * saturation_slope(self.family, z, p) * dz_dS).sum(axis=-1)

    # ------------------------------------------------------------------ plans
    def plan_units(self, weekly_money: np.ndarray, horizon_cpu: np.ndarray) -> np.ndarray:
        """(H*P, G, C) units bought by weekly money (G, C) held over the horizon at horizon_cpu (H*P, G, C)."""
        n = horizon_cpu.shape[0]
        prof = np.tile(self.profile.T, (n // self.periods_per_week, 1))          # (n, C)
        return np.asarray(weekly_money, float)[None] * prof[:, None, :] / horizon_cpu


@dataclass
class PlanContext:
    """What the response of a plan needs beyond the process: the history that carries in, the
    horizon's true cost per unit, the horizon length."""

    history_units: np.ndarray   # (L, G, C): the last L periods of observed units
    horizon_cpu: np.ndarray     # (H*P, G, C)
    horizon_weeks: int

    def to_json(self) -> dict:
        return {"history_units": self.history_units.tolist(), "horizon_cpu": self.horizon_cpu.tolist(),
                "horizon_weeks": self.horizon_weeks}

    @classmethod
    def from_json(cls, d: dict) -> "PlanContext":
        return cls(np.asarray(d["history_units"], float), np.asarray(d["horizon_cpu"], float),
                   int(d["horizon_weeks"]))


def plan_response(proc: MediaProcess, ctx: PlanContext, weekly_money: np.ndarray) -> np.ndarray:
    """(G, C) KPI over the horizon and the carryover after it that the plan's spend adds, each cell
    (history carried in, minus the same history with no spend in the horizon)."""
    G, C, L = len(proc.geos), len(proc.channels), proc.L
    n = ctx.horizon_cpu.shape[0]
    hist = ctx.history_units[-L:]
    tail = np.zeros((L, G, C))
    with_plan = np.concatenate([hist, proc.plan_units(weekly_money, ctx.horizon_cpu), tail])
    without = np.concatenate([hist, np.zeros((n, G, C)), tail])
    k = hist.shape[0]
    return (proc.contributions(with_plan)[k:] - proc.contributions(without)[k:]).sum(axis=0)


def plan_response_batch(proc: MediaProcess, ctx: PlanContext, weekly_money: np.ndarray) -> np.ndarray:
    """plan_response for many plans at once: (B, G, C) money -> (B, G, C) response (cells are
    independent, so B plans are B copies of the cell axis)."""
    B = weekly_money.shape[0]
    G, C = len(proc.geos), len(proc.channels)
    wide = MediaProcess(proc.geos * B, proc.channels, proc.periods_per_week, proc.profile,
                        np.tile(proc.kernel, (B, 1, 1)), proc.family,
                        {k: np.tile(v, (B, 1)) for k, v in proc.params.items()},
                        np.tile(proc.input_scale, (B, 1)), np.tile(proc.out_scale, (B, 1)))
    wctx = PlanContext(np.tile(ctx.history_units, (1, B, 1)), np.tile(ctx.horizon_cpu, (1, B, 1)), ctx.horizon_weeks)
    r = plan_response(wide, wctx, np.asarray(weekly_money, float).reshape(B * G, C))
    return r.reshape(B, G, C)


def best_plan(proc: MediaProcess, ctx: PlanContext, budget_weekly: float, low: np.ndarray, high: np.ndarray,
              starts: list[np.ndarray] | None = None) -> tuple[np.ndarray, float]:
    """The plan (weekly money per cell, (G, C)) with the largest true response for this weekly budget
    within per-cell bounds [low, high] (weekly money), and its total response.

    The objective is separable, so: (1) a Lagrangian sweep (each cell maximises f_i(x) - mu x on a
    fine grid of its interval, mu bisected to meet the budget), then (2) SLSQP from that point, from
    every `starts` plan and from the proportional plan; the best feasible result wins."""
    from scipy.optimize import minimize

    shape = low.shape
    lo, hi = low.ravel().astype(float), high.ravel().astype(float)
    n = lo.size
    B = float(budget_weekly)

    def f_all(x: np.ndarray) -> np.ndarray:
        return plan_response(proc, ctx, x.reshape(shape)).ravel()

    def project(x: np.ndarray) -> np.ndarray:
        a, b = -(np.abs(x).max() + B + 1), np.abs(x).max() + B + 1
        for _ in range(200):
            m = 0.5 * (a + b)
            if np.clip(x + m, lo, hi).sum() < B:
                a = m
            else:
                b = m
        return np.clip(x + 0.5 * (a + b), lo, hi)

    # (1) Lagrangian sweep on a grid of each cell's interval (one batched evaluation per grid column)
    m = 161
    grid = lo[None, :] + (hi - lo)[None, :] * np.linspace(0, 1, m)[:, None]          # (m, n)
    vals = plan_response_batch(proc, ctx, grid.reshape(m, *shape)).reshape(m, n)
    fin = np.isfinite(vals)
    vals = np.where(fin, vals, -np.inf)

    def pick(mu: float) -> np.ndarray:
        return grid[np.argmax(vals - mu * grid, axis=0), np.arange(n)]

    slopes = np.diff(vals, axis=0) / np.maximum(np.diff(grid, axis=0), 1e-300)
    mu_lo, mu_hi = -1.0, float(np.nanmax(np.where(np.isfinite(slopes), slopes, 0.0))) + 1.0
    for _ in range(100):
        mu = 0.5 * (mu_lo + mu_hi)
        if pick(mu).sum() > B:
            mu_lo = mu
        else:
            mu_hi = mu
    candidates = [project(pick(mu_hi))]
    candidates.append(project(lo + (hi - lo) * 0.5))
    for s in starts or []:
        candidates.append(project(np.asarray(s, float).ravel()))

    scale = max(abs(float(f_all(candidates[0]).sum())), 1.0)
    step = 1e-6 * np.maximum(hi - lo, 1e-9)

    def obj(x):
        return -f_all(x).sum() / scale

    def grad(x):
        f0 = f_all(x)
        up = np.minimum(x + step, hi + step)
        return -(f_all(up) - f0) / (up - x) / scale

    best_x, best_v = None, -np.inf
    for x0 in candidates:
        v0 = float(f_all(x0).sum())
        if v0 > best_v:
            best_x, best_v = x0, v0
        res = minimize(obj, x0, jac=grad, method="SLSQP", bounds=list(zip(lo, hi)),
                       constraints=[{"type": "eq", "fun": lambda x: (x.sum() - B) / max(B, 1.0),
                                     "jac": lambda x: np.ones_like(x) / max(B, 1.0)}],
                       options={"ftol": 1e-12, "maxiter": 500})
        x = project(np.clip(res.x, lo, hi))
        v = float(f_all(x).sum())
        if v > best_v:
            best_x, best_v = x, v
    return best_x.reshape(shape), best_v
