"""What a fit adds to pymc-marketing's MMM beyond the library's own configuration, as one typed value.

Three additions change the graph after ``build_model`` and are not saved by ``MMM.save``: the ROI
parameterization of the saturation (``roi_prior``), the window lift-test likelihood
(``lift_likelihood``) and the ROAS/CPA targets (``roas_targets``, through the library's public
``add_cost_per_target_calibration``, whose terms it does not save either). :class:`Calibration`
holds all three: the converted tests the model uses, their design and scope, the ROI prior and
typical week, the targets. ``build.build_model`` returns it beside the MMM, ``fit_model`` saves it
once in the posterior's attrs (:meth:`Calibration.save_to`, key ``ATTR``) and ``artifacts.load_model`` re-applies it to the
rebuilt graph (:meth:`Calibration.apply`, which owns the order: the calibration terms read beta).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from io import StringIO
from typing import Any

import pandas as pd

from mmm_pipeline.model.lift_likelihood import LIFT_NAME, LiftDesign

ATTR = "mmm_pipeline_calibration"
# Artifacts saved before this module kept the three parts under their own attrs.
_LEGACY = {"roi": "mmm_pipeline_roi_parameterization", "lift": "mmm_pipeline_lift_window",
           "targets": "mmm_pipeline_roas_targets"}


@dataclass
class Calibration:
    # the ROI parameterization: {"prior": roi_prior.prior_spec, x0, share, kpi0, kpi_per_spend, dims}
    roi: dict[str, Any] | None = None
    # the converted lift tests the model uses (model.data.lift_tests_for_model, every column kept)
    lift_tests: pd.DataFrame | None = None
    # the window likelihood's design (per test: its scope, readout and sigma) and its distribution;
    # None with the steady_state likelihood (pymc-marketing's own lift measurements, saved by MMM.save)
    lift_design: LiftDesign | None = None
    lift_likelihood: str = "normal"
    lift_nu: float = 5.0
    # the ROAS/CPA target rows added to the model (roas_targets.targets_for_model's usable rows)
    roas_targets: pd.DataFrame | None = None

    @property
    def calibrated(self) -> bool:
        """Lift tests or targets enter the likelihood."""
        return bool((self.lift_tests is not None and len(self.lift_tests))
                    or (self.roas_targets is not None and len(self.roas_targets)))

    def save_to(self, idata) -> None:
        """Keep this state in the attrs of the posterior's InferenceData (MMM.save writes them)."""
        idata.attrs.update(self.to_attrs())

    def to_attrs(self) -> dict[str, str]:
        return {ATTR: json.dumps({
            "roi": self.roi,
            "lift_tests": self.lift_tests.to_json(orient="table", index=False) if self.lift_tests is not None else None,
            "lift_design": self.lift_design.to_json() if self.lift_design is not None else None,
            "lift_likelihood": self.lift_likelihood, "lift_nu": self.lift_nu,
            "roas_targets": self.roas_targets.to_json(orient="records") if self.roas_targets is not None else None,
        })}

    @classmethod
    def from_attrs(cls, attrs: dict[str, Any]) -> "Calibration":
        raw = attrs.get(ATTR)
        if raw is None:
            return cls._from_legacy(attrs)
        d = json.loads(raw)
        return cls(roi=d["roi"],
                   lift_tests=pd.read_json(StringIO(d["lift_tests"]), orient="table") if d["lift_tests"] else None,
                   lift_design=LiftDesign.from_json(d["lift_design"]) if d["lift_design"] else None,
                   lift_likelihood=d["lift_likelihood"], lift_nu=d["lift_nu"],
                   roas_targets=_targets(d["roas_targets"]))

    @classmethod
    def _from_legacy(cls, attrs: dict[str, Any]) -> "Calibration":
        roi = json.loads(attrs[_LEGACY["roi"]]) if attrs.get(_LEGACY["roi"]) else None
        lift = json.loads(attrs[_LEGACY["lift"]]) if attrs.get(_LEGACY["lift"]) else None
        return cls(roi=roi, lift_design=LiftDesign.from_json(lift["design"]) if lift else None,
                   lift_likelihood=lift["likelihood"] if lift else "normal", lift_nu=lift["nu"] if lift else 5.0,
                   roas_targets=_targets(attrs.get(_LEGACY["targets"])))

    def apply(self, mmm, spend: pd.DataFrame | None = None) -> None:
        """Add the parts to a built `mmm` whose graph lacks them: the ROI parameterization first
        (the lift and target terms read the beta it derives), then the window lift term, then the
        targets. `spend`: training X in money for the targets (default: the fitted model's saved
        `channel_spend`)."""
        import mmm_pipeline.model.roas_targets as rt
        import mmm_pipeline.model.roi_prior as roi_prior
        from mmm_pipeline.model.lift_likelihood import add_window_lift_likelihood

        if self.roi:
            roi_prior.apply_saved(mmm, self.roi)
        if self.lift_design is not None:
            add_window_lift_likelihood(mmm, self.lift_design, likelihood=self.lift_likelihood, nu=self.lift_nu,
                                       name=LIFT_NAME)
        if self.roas_targets is not None and len(self.roas_targets):
            rt.add_roas_targets(mmm, self.roas_targets, spend if spend is not None else rt.saved_spend(mmm))


def _targets(raw: str | None) -> pd.DataFrame | None:
    from mmm_pipeline.model.roas_targets import COLUMNS

    return pd.DataFrame(json.loads(raw), columns=COLUMNS) if raw else None
