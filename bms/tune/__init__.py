"""SOC tuning workbench (``bms tune``): identify a cell profile from lab data, evaluate
estimators over datasets x perturbations, sweep estimator tuning in one compiled kernel.

* :mod:`bms.tune.datasets`   lab CSV / CAN log / model-replay datasets with a truth SOC
* :mod:`bms.tune.perturb`    sensor and initial-condition perturbations
* :mod:`bms.tune.kernel`     numba ``prange`` kernel: parameter sets x perturbations -> metrics
* :mod:`bms.tune.metrics`    metric definitions (RMSE, max, convergence, SOC bands, worst window)
* :mod:`bms.tune.evalrun`    ``bms tune eval``: estimators x datasets x perturbations
* :mod:`bms.tune.report`     self-contained HTML report
* :mod:`bms.tune.sweep`      ``bms tune sweep``: grid / random search, resumable, Dask
* :mod:`bms.tune.identify`   ``bms tune identify``: the profile fit with its evidence
"""
