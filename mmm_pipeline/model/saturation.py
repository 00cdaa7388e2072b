"""pymc-marketing's saturations (logistic, Hill) on numpy arrays.

``LogisticSaturation.function`` is a pytensor (xtensor) expression; the curves,
the reports and the sample generator evaluate it on plain arrays of posterior
draws or true parameters. :func:`logistic_saturation` compiles the library's
function once per process and applies it element-wise with numpy broadcasting,
so every place that needs the logistic uses the model's own definition,
``beta * (1 - exp(-lam * x)) / (1 + exp(-lam * x))``.
"""

from __future__ import annotations

import functools

import numpy as np


@functools.lru_cache(maxsize=1)
def _compiled():
    import pytensor
    import pytensor.tensor as pt
    from pymc_marketing.mmm import LogisticSaturation
    from pytensor.xtensor import as_xtensor

    x, lam, beta = pt.vector("x"), pt.vector("lam"), pt.vector("beta")
    out = LogisticSaturation().function(as_xtensor(x, dims=("i",)), lam=as_xtensor(lam, dims=("i",)),
                                        beta=as_xtensor(beta, dims=("i",)))
    return pytensor.function([x, lam, beta], out.values)


def logistic_saturation(x, lam, beta=1.0) -> np.ndarray:
    """``LogisticSaturation().function(x, lam=lam, beta=beta)`` evaluated on numpy inputs.

    The inputs broadcast against each other (numpy rules); the result has the
    broadcast shape, float64.
    """
    xb, lb, bb = np.broadcast_arrays(np.asarray(x, float), np.asarray(lam, float), np.asarray(beta, float))
    if xb.size == 0:
        return np.zeros(xb.shape)
    out = _compiled()(np.ascontiguousarray(xb).ravel(), np.ascontiguousarray(lb).ravel(),
                      np.ascontiguousarray(bb).ravel())
    return np.asarray(out, dtype=float).reshape(xb.shape)


def hill_saturation(x, slope, kappa, beta=1.0) -> np.ndarray:
    """``HillSaturation().function(x, slope=slope, kappa=kappa, beta=beta)`` on numpy inputs (broadcast).

    The library's own form, ``beta * sigmoid(slope * (log x - log kappa))`` and 0 at x = 0, in numpy:
    the curves call it on thousands of draws per cell, where compiling the pytensor expression per
    call would dominate. ``tests/test_roi_prior.py`` checks it against the library's function."""
    from scipy.special import expit

    xb, sb, kb, bb = np.broadcast_arrays(np.asarray(x, float), np.asarray(slope, float), np.asarray(kappa, float),
                                         np.asarray(beta, float))
    safe = np.maximum(xb, np.finfo(np.float64).tiny)
    return np.where(xb > 0, bb * expit(sb * (np.log(safe) - np.log(kb))), 0.0)
