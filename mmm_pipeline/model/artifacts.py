"""A fitted MMM on disk: NetCDF written atomically (the fit's calibration state is in its attrs),
read back with its calibration terms re-added."""

from __future__ import annotations

import os
import threading
import warnings
from pathlib import Path

from mmm_pipeline.model.calibration import Calibration
from mmm_pipeline.model.config import ModelError


def save_model(mmm, path: str | Path) -> Path:
    """MMM.save to NetCDF, written to a temporary name then renamed (atomic)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
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
    tests), with the file read fully into memory first, then re-apply the fit's
    :class:`~mmm_pipeline.model.calibration.Calibration` saved in the posterior's attrs.

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
            Calibration.from_attrs(idata.attrs).apply(mmm)
            return mmm
    except Exception as exc:  # netCDF/HDF5 errors, missing attrs, DifferentModelError
        raise ModelError(
            f"cannot load model file {path} ({path.stat().st_size} bytes): it is truncated, "
            f"corrupt or not a saved pymc-marketing MMM ({type(exc).__name__}: {exc})"
        ) from exc

