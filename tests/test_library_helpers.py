"""The model helpers that are the libraries' functions give the numbers our own copies gave.

Each test keeps the hand-written version it replaced as the oracle, so a change in
ArviZ, pymc-marketing or scikit-learn that moves a number fails here first.
"""

from __future__ import annotations

import math
import os
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from mmm_pipeline.model import diagnostics as D
from mmm_pipeline.model import summaries as S
from mmm_pipeline.model.saturation import logistic_saturation


def old_hdi_bounds(samples: np.ndarray, prob: float = 0.94):
    """The hand-written HDI that az.hdi replaced: narrowest interval holding `prob`, along axis 0."""
    x = np.sort(samples, axis=0)
    n = x.shape[0]
    k = int(math.floor(prob * n))
    if k < 1 or n < 2:
        return x[0], x[-1]
    widths = x[k:] - x[: n - k]
    i = np.argmin(widths, axis=0)
    lo = np.take_along_axis(x, i[None], axis=0)[0]
    hi = np.take_along_axis(x, (i + k)[None], axis=0)[0]
    return lo, hi


@pytest.mark.parametrize("shape", [(4000,), (4000, 1), (4000, 41), (4000, 3, 4), (400, 7), (2, 3), (1, 2)])
def test_hdi_bounds_is_az_hdi_and_equals_the_old_copy_on_4000_draws(shape):
    rng = np.random.default_rng(11)
    for draws in (rng.normal(size=shape), rng.gamma(2.0, 1.5, size=shape), rng.lognormal(0, 1, size=shape)):
        lo, hi = S.hdi_bounds(draws)
        old_lo, old_hi = old_hdi_bounds(draws)
        np.testing.assert_array_equal(lo, old_lo)
        np.testing.assert_array_equal(hi, old_hi)


def posterior(rng, chains=4, draws=1000) -> xr.Dataset:
    geos, channels = ["US-CA", "US-TX"], ["search", "social", "tv"]
    coords = {"chain": range(chains), "draw": range(draws), "geo": geos, "channel": channels}
    shape = (chains, draws, len(geos), len(channels))
    return xr.Dataset({
        "saturation_lam": (("chain", "draw", "geo", "channel"), rng.lognormal(1, 0.3, shape)),
        "saturation_beta": (("chain", "draw", "geo", "channel"), rng.lognormal(-2, 0.2, shape)),
        "adstock_alpha": (("chain", "draw", "geo", "channel"), rng.beta(2, 3, shape)),
        "y_sigma": (("chain", "draw", "geo"), rng.gamma(5, 0.01, shape[:3])),
        "intercept_contribution": (("chain", "draw"), rng.normal(0.5, 0.1, shape[:2])),
    }, coords=coords)


def old_summarise(da) -> pd.DataFrame:
    dims = [d for d in da.dims if d not in ("chain", "draw")]
    stacked = da.stack(sample=("chain", "draw")).transpose("sample", *dims)
    arr = stacked.to_numpy()
    lo, hi = old_hdi_bounds(arr)
    index = pd.MultiIndex.from_product([stacked.coords[d].values for d in dims], names=dims) if dims \
        else pd.Index([0])
    return pd.DataFrame({"mean": np.ravel(arr.mean(axis=0)), "hdi_low": np.ravel(lo), "hdi_high": np.ravel(hi)},
                        index=index).reset_index()


def test_summarise_and_parameter_summary_are_az_summary_with_the_old_numbers():
    post = posterior(np.random.default_rng(3))
    for name in ("saturation_lam", "y_sigma", "intercept_contribution"):
        pd.testing.assert_frame_equal(S.summarise(post[name]), old_summarise(post[name]), rtol=1e-12, atol=0)
    cd = xr.Dataset({"target_scale": 1000.0,
                     "channel_scale": ("channel", np.array([10.0, 20.0, 30.0]))},
                    coords={"channel": ["search", "social", "tv"]})
    mmm = SimpleNamespace(idata=SimpleNamespace(posterior=post, constant_data=cd))
    got = S.parameter_summary(mmm)
    beta_kpi = old_summarise(post["saturation_beta"] * 1000.0)
    row = got[(got["parameter"] == "saturation_beta_kpi") & (got["geo"] == "US-TX") & (got["channel"] == "tv")].iloc[0]
    ref = beta_kpi[(beta_kpi["geo"] == "US-TX") & (beta_kpi["channel"] == "tv")].iloc[0]
    assert row[["mean", "hdi_low", "hdi_high"]].tolist() == pytest.approx(ref[["mean", "hdi_low", "hdi_high"]].tolist(),
                                                                          rel=1e-12)
    assert set(got["parameter"]) == {"adstock_alpha", "saturation_lam", "saturation_beta", "saturation_beta_kpi"}
    assert (got["target_scale"] == 1000.0).all() and got.loc[got["channel"] == "tv", "channel_scale"].eq(30.0).all()


def test_convergence_is_az_summary_per_element_with_the_old_labels():
    import arviz as az

    post = posterior(np.random.default_rng(5), chains=2, draws=200)
    names = ["saturation_lam", "y_sigma", "intercept_contribution"]
    summ = D.convergence(SimpleNamespace(posterior=post), names)
    rhat, ess, tail = az.rhat(post[names]), az.ess(post[names], method="bulk"), az.ess(post[names], method="tail")
    # the old per-element loop: labels "name[coord, coord]", values from az.rhat / az.ess
    for n in names:
        da = rhat[n]
        dims = [d for d in da.dims if d not in ("chain", "draw")]
        for idx in np.ndindex(da.shape):
            label = f"{n}[{', '.join(str(da.coords[d].values[i]) for d, i in zip(dims, idx))}]" if dims else n
            row = summ.loc[label]
            assert row["parameter"] == n
            assert row["r_hat"] == pytest.approx(float(da.values[idx]), rel=1e-12)
            assert row["ess_bulk"] == pytest.approx(float(ess[n].values[idx]), rel=1e-12)
            assert row["ess_tail"] == pytest.approx(float(tail[n].values[idx]), rel=1e-12)
    assert len(summ) == 2 * 3 + 2 + 1


def test_fit_metrics_are_the_libraries_and_the_classical_definitions():
    rng = np.random.default_rng(2)
    y = rng.uniform(100, 200, (52, 3))
    pred = y + rng.normal(0, 10, y.shape)
    r2, mape = D.fit_metrics(y, pred)
    assert r2 == pytest.approx(1 - ((y - pred) ** 2).sum() / ((y - y.mean()) ** 2).sum(), rel=1e-12)
    assert mape == pytest.approx(np.mean(np.abs((y - pred) / y)), rel=1e-12)
    y[0, 0] = 0.0  # zero weeks are left out of MAPE, as before
    nz = y != 0
    assert D.fit_metrics(y, pred)[1] == pytest.approx(np.mean(np.abs((y[nz] - pred[nz]) / y[nz])), rel=1e-12)


def test_logistic_saturation_is_pymc_marketings_function_to_rounding():
    import pytensor.tensor as pt
    from pymc_marketing.mmm import LogisticSaturation
    from pytensor.xtensor import as_xtensor

    rng = np.random.default_rng(4)
    x, lam, beta = rng.uniform(0, 3, (400, 41)), rng.uniform(0.5, 6, (400, 1)), rng.uniform(0, 2, (400, 1))
    got = logistic_saturation(x, lam, beta)
    e = np.exp(-lam * x)
    np.testing.assert_allclose(got, beta * (1 - e) / (1 + e), rtol=1e-12, atol=0)  # compiled: see below
    direct = LogisticSaturation().function(as_xtensor(pt.as_tensor(x), dims=("d", "p")),
                                           lam=as_xtensor(pt.as_tensor(lam[:, 0]), dims=("d",)),
                                           beta=as_xtensor(pt.as_tensor(beta[:, 0]), dims=("d",)))
    # numba at its default -O3 vectorises exp, which differs from numpy's in the last bits (seen: 1.7e-14
    # relative on one value of 16,400)
    np.testing.assert_allclose(got, direct.transpose("d", "p").values.eval(), rtol=1e-12, atol=0)
    assert logistic_saturation(np.zeros((0, 3)), 1.0).shape == (0, 3)


def test_the_test_environment_lets_pytensor_cache_numba_functions_on_disk(tmp_path):
    """Fits in the suite are mostly numba compiles; they stay affordable only while pytensor's disk
    cache works. NUMBA_OPT=0 (once set in conftest) silently disabled it ("dynamic globals")."""
    import subprocess
    import sys

    script = (
        "import numpy as np, pytensor, pytensor.tensor as pt\n"
        "x = pt.vector('x')\n"
        "f = pytensor.function([x], pt.sigmoid(pt.exp(x) * 2 + x), mode='NUMBA')\n"
        "f(np.ones(3))\n"
    )
    env = dict(os.environ, PYTENSOR_FLAGS=f"base_compiledir={tmp_path}")
    subprocess.run([sys.executable, "-c", script], check=True, env=env, timeout=300)
    cached = list((tmp_path / "numba").glob("*.nbi"))
    assert cached, f"pytensor wrote no numba cache index under {tmp_path / 'numba'} (NUMBA_OPT={os.environ.get('NUMBA_OPT')})"


def test_the_thinned_sampler_repeats_the_pinned_pymc_marketing_method():
    """fit._thin_before_deterministics replaces pymc-marketing's private _sample_with_deterministics
    with the same steps plus thinning: an upgrade that changes that method fails here, not silently."""
    import hashlib
    import inspect

    from pymc_marketing.mmm import MMM

    from mmm_pipeline.code_graph import normalise
    from mmm_pipeline.model import fit

    source = normalise(inspect.getsource(MMM._sample_with_deterministics))
    assert hashlib.sha256(source.encode()).hexdigest()[:16] == fit.SAMPLE_WITH_DETERMINISTICS_SHA, (
        "pymc-marketing's MMM._sample_with_deterministics changed: review fit._thin_before_deterministics "
        "against it, then pin the new hash")
    assert normalise("def f():\n    'doc'\n    return 1  # note\n") == normalise("def f():\n    return 1")


@pytest.mark.parametrize("exported", [None, "2"])
def test_every_fit_compiles_at_one_numba_level_set_through_numba_opt(monkeypatch, exported):
    """The first fit sets NUMBA_OPT for the process and later fits (the refit's 0, say) do not move it;
    numba's compiler reads it back (reload_config runs before every compile). A user's export wins."""
    from numba.core import config as numba_config

    from mmm_pipeline.model.fit import use_numba_opt

    if exported is None:
        monkeypatch.delenv("NUMBA_OPT", raising=False)
    else:
        monkeypatch.setenv("NUMBA_OPT", exported)
    use_numba_opt(1)
    use_numba_opt(0)
    numba_config.reload_config()
    expected = 1 if exported is None else int(exported)
    assert os.environ["NUMBA_OPT"] == str(expected) and int(numba_config.OPT) == expected
