"""Cramér–Rao bounds on the labels (:func:`cramer_rao_bound`)."""

from __future__ import annotations

import numpy as np

from gaiacnn.demo.physics.constants import (
    CRLB_CHUNK,
    CRLB_EIG_RTOL,
    CRLB_NUISANCE_PRIOR_SIGMA,
    CRLB_STEPS,
    CRLB_UNCONSTRAINED,
    LABELS,
    MAG_PER_NATS,
)
from gaiacnn.demo.physics.observe import _spectrum, noise_free_observables
from gaiacnn.demo.physics.params import DEFAULT_PARAMS, _with_defaults


# ==========================================================================================
# Cramér–Rao bound
# ==========================================================================================
def _perturb(truth: dict[str, np.ndarray], name: str, step: np.ndarray) -> dict[str, np.ndarray]:
    out = dict(truth)
    out[name] = np.asarray(truth[name], dtype=np.float64) + step
    return out


def _model_vector(truth: dict[str, np.ndarray], params: dict, inputs: str) -> np.ndarray:
    if inputs == "rvs":
        return _spectrum(truth, params)
    mod = noise_free_observables(truth, params)
    return np.concatenate(
        [
            mod["flux"],
            mod["bp"],
            mod["rp"],
            mod["g"][:, None],
            mod["bp_mag"][:, None],
            mod["rp_mag"][:, None],
            mod["parallax_mas"][:, None],
        ],
        axis=1,
    )


def _error_vector(observed: dict[str, np.ndarray], inputs: str) -> np.ndarray:
    flux = np.asarray(observed["flux"], np.float64)
    err = np.asarray(observed["flux_error"], np.float64)
    err = np.where(np.isfinite(flux) & np.isfinite(err) & (err > 0), err, np.inf)
    if inputs == "rvs":
        return err
    mags = [
        MAG_PER_NATS / np.asarray(observed[f"phot_{b}_mean_flux_over_error"], np.float64)[:, None]
        for b in ("g", "bp", "rp")
    ]
    return np.concatenate(
        [
            err,
            np.asarray(observed["bp_coefficient_errors"], np.float64),
            np.asarray(observed["rp_coefficient_errors"], np.float64),
            *mags,
            np.asarray(observed["parallax_error"], np.float64)[:, None],
        ],
        axis=1,
    )


def cramer_rao_bound(
    truth: dict[str, np.ndarray],
    observed: dict[str, np.ndarray],
    params: dict = DEFAULT_PARAMS,
    inputs: str = "rvs",
) -> dict[str, np.ndarray]:
    """Per-star Cramér–Rao lower bound (1 sigma, label units) of each of LABELS.

    Fisher matrix F = J^T diag(1/sigma^2) J with J the central finite-difference Jacobian
    (steps CRLB_STEPS) of the noise-free model and sigma the per-pixel / per-coefficient
    errors of ``observed``; NaN (or non-positive-error) pixels carry no information.
    inputs="rvs": spectrum only, nuisance rv_shift_kms and mass (via the CN/N dredge-up);
    inputs="all": spectrum + BP/RP coefficients + G/BP/RP + parallax, nuisance rv_shift_kms,
    mass, distance_pc and a_v.  Nuisance parameters get weak priors
    (CRLB_NUISANCE_PRIOR_SIGMA) and are marginalised by inverting the full matrix.  Labels
    lying in a numerically null direction of F get ``inf``.  Binary secondaries are fixed.

    Returns: {label: (n,) float64}.
    """
    if inputs not in ("rvs", "all"):
        raise ValueError("inputs must be 'rvs' or 'all'")
    params = _with_defaults(params)
    nuis = ["rv_shift_kms", "mass"] + (["distance_pc", "a_v"] if inputs == "all" else [])
    names = list(LABELS) + nuis
    n = np.asarray(truth["teff"]).size
    sigma_all = _error_vector(observed, inputs)
    out = {lab: np.empty(n) for lab in LABELS}
    for c0 in range(0, n, CRLB_CHUNK):
        sl = slice(c0, min(n, c0 + CRLB_CHUNK))
        sub = {k: np.asarray(v)[sl] for k, v in truth.items() if np.ndim(v) == 1}
        k = sl.stop - sl.start
        w = 1.0 / sigma_all[sl] ** 2
        jac = []
        for name in names:
            step = np.full(k, CRLB_STEPS[name])
            if name == "distance_pc":
                step = CRLB_STEPS[name] * sub["distance_pc"] / 1000.0
            hi = _model_vector(_perturb(sub, name, step), params, inputs)
            lo = _model_vector(_perturb(sub, name, -step), params, inputs)
            jac.append((hi - lo) / (2.0 * step[:, None]))
        jmat = np.stack(jac, axis=1)  # (k, p, n_obs)
        fisher = np.einsum("kao,kbo->kab", jmat * w[:, None, :], jmat)
        for i, name in enumerate(names):
            if name in CRLB_NUISANCE_PRIOR_SIGMA:
                fisher[:, i, i] += CRLB_NUISANCE_PRIOR_SIGMA[name] ** -2
        diag = np.diagonal(fisher, axis1=1, axis2=2).copy()
        dead = ~(diag > 0)
        for i in range(len(LABELS), len(names)):  # drop irrelevant nuisance parameters
            fisher[dead[:, i], i, i] = 1.0
        scale = 1.0 / np.sqrt(np.where(dead, 1.0, diag))
        scaled = fisher * scale[:, :, None] * scale[:, None, :]
        evals, evecs = np.linalg.eigh(scaled)
        tol = CRLB_EIG_RTOL * np.max(evals, axis=1, keepdims=True)
        good = evals > tol
        inv_e = np.where(good, 1.0 / np.where(good, evals, 1.0), 0.0)
        var_scaled = np.einsum("kae,ke->ka", evecs**2, inv_e)
        null_weight = np.einsum("kae,ke->ka", evecs**2, (~good).astype(float))
        var = var_scaled * scale**2
        for i, lab in enumerate(LABELS):
            bad = dead[:, i] | (null_weight[:, i] > 1e-6)
            out[lab][sl] = np.where(bad, CRLB_UNCONSTRAINED, np.sqrt(var[:, i]))
    return out
