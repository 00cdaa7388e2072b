"""A fitted MMM on disk: NetCDF written atomically, read back with its calibration terms re-added."""

from __future__ import annotations

import os
import threading
import warnings
from pathlib import Path

from mmm_pipeline.model.config import ModelError


def save_model(mmm, path: str | Path) -> Path:
    """MMM.save to NetCDF, written to a temporary name then renamed (atomic)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    import mmm_pipeline.model.roas_targets as rt
    import mmm_pipeline.model.roi_prior as roi_prior
    from mmm_pipeline.model.lift_likelihood import lift_attrs

    if getattr(mmm, "idata", None) is not None:
        mmm.idata.attrs.update({**roi_prior.attrs(mmm), **lift_attrs(mmm), **rt.attrs(mmm)})
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            mmm.save(str(tmp))
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def load_model(path: str | Path):
    """What MMM.load does (rebuild the graph from fit_data, re-add pymc-marketing's lift
    tests), with the file read fully into memory first, then redo the ROI parameterization
    (`roi_prior`) and re-add the window-lift term (`lift_likelihood`) saved in the attrs.

    Raises ModelError when the file is missing, truncated or not a saved MMM.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"model file {path} does not exist")
    from pymc_marketing.data.idata import load_idata
    from pymc_marketing.mmm import MMM

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # MMM.load opens the file lazily; read it all now so that a damaged file
            # fails here, not at the first posterior access, and release the file.
            lazy = load_idata(str(path))
            try:
                idata = lazy.load()
            finally:
                lazy.close()
            mmm = MMM.load_from_idata(idata)
            import mmm_pipeline.model.roas_targets as rt
            import mmm_pipeline.model.roi_prior as roi_prior
            from mmm_pipeline.model.lift_likelihood import readd_from_attrs

            roi_prior.readd_from_attrs(mmm, idata.attrs)  # first: the calibration terms read beta
            readd_from_attrs(mmm, idata.attrs)
            rt.readd_from_attrs(mmm, idata.attrs)
            return mmm
    except Exception as exc:  # netCDF/HDF5 errors, missing attrs, DifferentModelError
        raise ModelError(
            f"cannot load model file {path} ({path.stat().st_size} bytes): it is truncated, "
            f"corrupt or not a saved pymc-marketing MMM ({type(exc).__name__}: {exc})"
        ) from exc

