"""Cell-profile fitting from lab data (``bms profile fit``).

* :mod:`bms.fit.ocv`          OCV and hysteresis amplitude from slow discharge/charge curves
* :mod:`bms.fit.dynamic`      R0/RC/hysteresis-rate/instantaneous-hysteresis by least squares
  on a drive-cycle voltage record, with :func:`bms.model.simulate` as the forward model
* :mod:`bms.fit.temperature`  the rule that fills the profile's temperature grid
* :mod:`bms.fit.pipeline`     the whole fit, iterated (:func:`fit_profile`)
"""

from bms.fit.pipeline import FitResult, fit_profile, load_datasheet

__all__ = ["FitResult", "fit_profile", "load_datasheet"]
