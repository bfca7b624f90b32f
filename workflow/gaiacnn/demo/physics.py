"""Physics of the offline demo survey (RVS spectra, XP, photometry, astrometry, S/N, CRLB).

A compact but physically motivated forward model of what Guiglion et al. (2024, A&A 682, A9)
feed their hybrid CNN:

* **Population** – thin disc, thick disc and halo stars with the training sample's shape
  (~70 % giants incl. a red clump, [α/M]–[M/H] bimodality, radial metallicity gradient),
  placed at Galactic positions drawn from each component's density inside the volume where
  the star is bright enough for a published RVS spectrum; plus out-of-distribution (OOD)
  populations (OB stars, M giants, nearby cool dwarfs, unresolved binaries).
* **RVS spectra** – normalised flux on the DR3 grid (846–870 nm, 0.01 nm) from a line list
  (:data:`LINE_TABLE`) with curve-of-growth line strengths that depend on Teff, log g and the
  relevant abundance (Saha/Boltzmann with an H⁻ continuum), Gaussian cores (LSF ⊗ Doppler),
  Lorentzian damping wings for strong lines, Paschen lines in hot stars and TiO bands in M
  stars; residual RV shifts, photon noise and DR3-like NaN edges.
* **SED, photometry and XP** – blackbody × line blanketing × Balmer jump × TiO × extinction,
  integrated through smooth G/BP/RP passbands (solar star: M_G = 4.67, BP−RP = 0.82) and
  projected onto 55 orthonormal Gauss–Hermite functions per band; the (noisy) coefficients
  evaluated back on GaiaXPy's grid give XP sampled spectra in W m⁻² nm⁻¹
  (:func:`xp_sampled_flux`).
* **CRLB** – Fisher-matrix bounds on the labels from finite-difference Jacobians.

Everything tunable is a key of :data:`DEFAULT_PARAMS` (nested, JSON-able) or a named module
constant.  All randomness comes from the ``numpy.random.Generator`` passed in.

Units: Teff [K]; log g [dex, cgs]; abundances [dex]; wavelengths [nm]; distances [pc] unless
the key says ``_kpc``; velocities [km/s]; magnitudes [mag]; parallaxes [mas].
"""

from __future__ import annotations

import copy
import functools
import math

import numpy as np

from gaiacnn.constants import (
    RVS_N_PIXELS,
    RVS_RESOLVING_POWER,
    RVS_WAVELENGTH_MIN_NM,
    RVS_WAVELENGTH_STEP_NM,
    XP_N_COEFFICIENTS,
    rvs_wavelength_nm,
)

__all__ = [
    "DEFAULT_PARAMS",
    "LABELS",
    "LINE_TABLE",
    "OOD_POPULATIONS",
    "POPULATION_CODES",
    "STAGE_CODES",
    "cramer_rao_bound",
    "equivalent_width",
    "merge_params",
    "noise_free_observables",
    "radial_velocity_error",
    "simulate_stars",
    "xp_basis",
    "xp_sampled_flux",
    "xp_sampled_wavelength_nm",
]

LABELS: tuple[str, ...] = ("teff", "logg", "m_h", "alpha_m", "fe_h")

#: truth["population"] codes (int8).  Codes >= 3 are the out-of-distribution populations.
POPULATION_CODES: dict[str, int] = {
    "thin_disc": 0,
    "thick_disc": 1,
    "halo": 2,
    "ob_star": 3,  # hot OB main-sequence stars (Paschen lines, no metal lines)
    "m_giant": 4,  # cool M giants (TiO bands)
    "cool_dwarf": 5,  # nearby K/M dwarfs (large parallaxes)
    "binary": 6,  # unresolved double-lined binaries (large RUWE)
}
OOD_POPULATIONS: tuple[str, ...] = ("ob_star", "m_giant", "cool_dwarf", "binary")

#: truth["stage"] codes (int8): evolutionary stage of the primary.
STAGE_CODES: dict[str, int] = {
    "main_sequence": 0,  # dwarfs (log g >= ~4), incl. cool dwarfs and binary primaries
    "subgiant": 1,  # 3.5 <= log g < 4.1
    "red_giant_branch": 2,  # log g < 3.5, incl. lower and upper RGB
    "red_clump": 3,  # core-He-burning giants, Teff ~4700-4900 K, log g ~2.45
    "m_giant": 4,  # tip-RGB/AGB M giants, Teff < 3900 K
    "hot_main_sequence": 5,  # OB stars
}
GIANT_STAGES: tuple[int, ...] = (2, 3, 4)

# --- physical constants -------------------------------------------------------------------
C_KMS = 299_792.458  # speed of light, km/s
C2_NM_K = 1.438_777e7  # second radiation constant hc/k, nm K
THETA_NUM = 5040.0  # theta = 5040 / Teff (eV^-1 in log10 units)
H_MINUS_EV = 0.75  # H- binding energy, eV (continuum opacity's temperature dependence)
H_N3_EV = 12.09  # excitation energy of hydrogen n = 3 (Paschen continuum), eV
HOT_CONTINUUM_TEFF = 7000.0  # K, above this H bound-free opacity dominates the continuum
LOGG_SUN = 4.438  # dex
TEFF_SUN = 5772.0  # K
K_B = 1.380_649e-23  # J/K
AMU = 1.660_539e-27  # kg
R0_KPC = 8.2  # Sun's galactocentric radius, kpc
Z_SUN_KPC = 0.0208  # Sun's height above the plane, kpc
PARALLAX_ZERO_POINT_MAS = -0.017  # DR3 global zero point, not corrected (paper Sect. 2.2)

# --- spectrum model constants -------------------------------------------------------------
REF_TEFF = 4800.0  # K, reference star of LINE_TABLE's log_eta_ref (red-clump-like giant)
REF_LOGG = 2.5  # dex, idem
LINE_DEPTH_MAX = 0.92  # saturated central depth of an atomic line (Minnaert-like law)
MOLECULE_DEPTH_MAX = 0.6  # idem for CN features
LOG_ETA_CLIP = (-9.0, 7.0)  # bounds on log10(line-to-continuum opacity) (overflow safety)
ION_GRAVITY_COEFF = -1.0 / 3.0  # d log(eta)/d log g for majority-species lines (P_e ~ g^(1/3))
DAMPING_GRAVITY_COEFF = 0.1  # d log(gamma)/d log g of the Lorentzian wings (pressure)
DAMPING_GAMMA_NM = 0.02  # HWHM of the Lorentzian damping profile at REF_LOGG, nm
CN_DISSOCIATION_COEFF = 5.0  # d log(eta)/d theta of CN (molecular equilibrium, effective)
MIN_WINDOW_NM = 0.3  # minimum half window around a weak line, nm
CORE_WINDOW_SIGMAS = 6.0  # weak-line half window in units of the core Gaussian sigma
BROAD_VSINI_KMS = 30.0  # stars above this are evaluated with wider line windows
NEGLIGIBLE_ETA = 1e-6  # a line weaker than this in every star of a group is skipped
MIN_FLUX = 1e-4  # floor of the noise-free flux (used for sqrt(F) noise)
PASCHEN_STARK_SIGMA_NM = 0.08  # extra Gaussian core width of Paschen lines (Stark), nm
PASCHEN_GAMMA_NM = 0.12  # Lorentzian HWHM of Paschen wings at log g = 4, nm
PASCHEN_GAMMA_LOGG_COEFF = 0.25  # d log(gamma_P)/d log g
PASCHEN_WINDOW_NM = 4.0  # half window of a Paschen line, nm
TIO_RIPPLE_AMPLITUDE = 0.25  # relative amplitude of the rotational fine structure of TiO bands
TIO_RIPPLE_PERIOD_NM = 0.17  # period of that fine structure, nm

# Line table.  Air wavelengths (nm) of real features of the Gaia RVS / Ca II triplet region
# (Ca II triplet; Fe I, Ti I, Si I, S I, N I, Ni I; Cr II 8551 A, V II and CN in the 8650 A
# Si+V+N blend; cf. Guiglion et al. 2024 Sect. 3.5.1, Contursi et al. 2021, Kurucz/VALD).
# Columns:
#   wavelength_nm, species, abundance group, kind, chi_ex [eV], ionisation energy [eV],
#   log_eta_ref, log_damping, half_window_nm
# abundance group: "fe" -> [Fe/H]; "alpha" -> [M/H]+[alpha/M] (Ca, Si, Ti, S, Mg);
#   "metal" -> [M/H]; "nitrogen" -> [M/H] + [N/M] (dredge-up, giants).
# kind: "neutral_minority" (neutral line of a mostly ionised species: ratio to the H-
#   continuum ~ 10^(theta (I - chi - 0.75)), gravity-insensitive); "neutral_majority"
#   (mostly neutral species, S I and N I: 10^(-theta (chi + 0.75)) / P_e);
#   "ion_majority" (Ca II, Cr II, V II: 10^(-theta (chi + 0.75)) / P_e, fading at high
#   Teff as the ion is ionised again -- "ionisation energy" is then the ion's, i.e. the
#   second ionisation energy); "molecule" (CN, ~10^(theta D)).
# log_eta_ref: log10 of the central line-to-continuum optical depth in the reference star
#   (REF_TEFF, REF_LOGG, solar abundances).
# log_damping: log10 of the Lorentzian wing amplitude relative to the core (NaN: no wings).
LINE_TABLE: tuple[tuple[float, str, str, str, float, float, float, float, float], ...] = (
    # --- Ca II triplet (damping wings) ---
    (849.802, "Ca II", "alpha", "ion_majority", 1.69, 11.87, 1.90, -0.70, 4.0),
    (854.209, "Ca II", "alpha", "ion_majority", 1.70, 11.87, 2.30, -0.60, 4.0),
    (866.214, "Ca II", "alpha", "ion_majority", 1.69, 11.87, 2.10, -0.60, 4.0),
    # --- Fe I ---
    (846.841, "Fe I", "fe", "neutral_minority", 2.22, 7.90, 1.78, math.nan, 0.0),
    (847.184, "Fe I", "fe", "neutral_minority", 4.96, 7.90, -0.32, math.nan, 0.0),
    (851.408, "Fe I", "fe", "neutral_minority", 2.20, 7.90, 1.99, math.nan, 0.0),
    (851.511, "Fe I", "fe", "neutral_minority", 3.02, 7.90, 1.26, math.nan, 0.0),
    (852.667, "Fe I", "fe", "neutral_minority", 4.91, 7.90, 0.10, math.nan, 0.0),
    (853.687, "Fe I", "fe", "neutral_minority", 4.40, 7.90, 0.21, math.nan, 0.0),  # blue wing
    (857.180, "Fe I", "fe", "neutral_minority", 5.01, 7.90, -0.21, math.nan, 0.0),
    (858.226, "Fe I", "fe", "neutral_minority", 2.99, 7.90, 1.36, math.nan, 0.0),
    (859.295, "Fe I", "fe", "neutral_minority", 4.96, 7.90, 0.10, math.nan, 0.0),
    (859.883, "Fe I", "fe", "neutral_minority", 4.39, 7.90, 0.31, math.nan, 0.0),
    (860.708, "Fe I", "fe", "neutral_minority", 5.01, 7.90, -0.11, math.nan, 0.0),
    (861.180, "Fe I", "fe", "neutral_minority", 2.85, 7.90, 1.47, math.nan, 0.0),
    (861.394, "Fe I", "fe", "neutral_minority", 4.99, 7.90, -0.00, math.nan, 0.0),
    (861.628, "Fe I", "fe", "neutral_minority", 4.91, 7.90, 0.10, math.nan, 0.0),
    (862.161, "Fe I", "fe", "neutral_minority", 2.95, 7.90, 1.36, math.nan, 0.0),
    (863.241, "Fe I", "fe", "neutral_minority", 4.10, 7.90, -0.00, math.nan, 0.0),
    (864.363, "Fe I", "fe", "neutral_minority", 4.30, 7.90, -0.11, math.nan, 0.0),
    (866.190, "Fe I", "fe", "neutral_minority", 4.61, 7.90, 0.31, math.nan, 0.0),
    (867.475, "Fe I", "fe", "neutral_minority", 2.83, 7.90, 1.47, math.nan, 0.0),  # red wing
    (868.863, "Fe I", "fe", "neutral_minority", 2.18, 7.90, 2.10, math.nan, 0.0),
    (869.946, "Fe I", "fe", "neutral_minority", 4.96, 7.90, 0.10, math.nan, 0.0),
    # --- Ti I (blends at 8468, 8518-8521, 8529 in the blue wing of Ca II 8542) ---
    (846.840, "Ti I", "alpha", "neutral_minority", 1.89, 6.83, -0.00, math.nan, 0.0),
    (851.074, "Ti I", "alpha", "neutral_minority", 2.27, 6.83, -0.64, math.nan, 0.0),
    (851.835, "Ti I", "alpha", "neutral_minority", 1.88, 6.83, 0.42, math.nan, 0.0),
    (852.113, "Ti I", "alpha", "neutral_minority", 2.27, 6.83, -0.21, math.nan, 0.0),
    (852.944, "Ti I", "alpha", "neutral_minority", 1.89, 6.83, -0.11, math.nan, 0.0),
    (855.698, "Ti I", "alpha", "neutral_minority", 2.27, 6.83, -0.64, math.nan, 0.0),
    (866.670, "Ti I", "alpha", "neutral_minority", 1.07, 6.83, -0.64, math.nan, 0.0),
    (868.298, "Ti I", "alpha", "neutral_minority", 1.05, 6.83, 0.63, math.nan, 0.0),
    (869.233, "Ti I", "alpha", "neutral_minority", 1.05, 6.83, 0.31, math.nan, 0.0),
    # --- Ca I ---
    (853.915, "Ca I", "alpha", "neutral_minority", 2.93, 6.11, -0.64, math.nan, 0.0),
    # --- Si I (8650 A blend with V II and CN) ---
    (850.222, "Si I", "alpha", "neutral_minority", 5.87, 8.15, 0.10, math.nan, 0.0),
    (855.678, "Si I", "alpha", "neutral_minority", 5.87, 8.15, 0.21, math.nan, 0.0),
    (859.596, "Si I", "alpha", "neutral_minority", 6.19, 8.15, -0.21, math.nan, 0.0),
    (864.847, "Si I", "alpha", "neutral_minority", 6.21, 8.15, 0.63, math.nan, 0.0),
    # --- S I (mostly neutral: strengthen toward higher Teff) ---
    (869.393, "S I", "alpha", "neutral_majority", 7.87, 10.36, -2.30, math.nan, 0.0),
    (869.463, "S I", "alpha", "neutral_majority", 7.87, 10.36, -2.10, math.nan, 0.0),
    # --- N I (high excitation, visible in F/A stars) ---
    (868.028, "N I", "nitrogen", "neutral_majority", 10.34, 14.53, -4.50, math.nan, 0.0),
    (868.340, "N I", "nitrogen", "neutral_majority", 10.33, 14.53, -4.60, math.nan, 0.0),
    (868.615, "N I", "nitrogen", "neutral_majority", 10.33, 14.53, -4.70, math.nan, 0.0),
    # --- Ni I ---
    (847.685, "Ni I", "metal", "neutral_minority", 3.66, 7.64, -0.43, math.nan, 0.0),
    (869.285, "Ni I", "metal", "neutral_minority", 3.66, 7.64, -0.74, math.nan, 0.0),
    # --- ions of majority species (gravity sensitive) ---
    (855.100, "Cr II", "metal", "ion_majority", 3.90, 16.49, -0.64, math.nan, 0.0),
    (864.940, "V II", "metal", "ion_majority", 2.50, 14.65, -1.06, math.nan, 0.0),
    # --- CN red system (pseudo-features; 8650 A feature of the Si+V+N blend) ---
    (848.880, "CN", "nitrogen", "molecule", 0.50, 7.70, -0.84, math.nan, 0.0),
    (852.960, "CN", "nitrogen", "molecule", 0.50, 7.70, -1.06, math.nan, 0.0),
    (857.250, "CN", "nitrogen", "molecule", 0.50, 7.70, -1.06, math.nan, 0.0),
    (862.580, "CN", "nitrogen", "molecule", 0.50, 7.70, -0.84, math.nan, 0.0),
    (865.025, "CN", "nitrogen", "molecule", 0.50, 7.70, -0.43, math.nan, 0.0),
)

#: Hydrogen Paschen lines (air, nm) and log10 of their relative strength (gf-like).
PASCHEN_LINES: tuple[tuple[str, float, float], ...] = (
    ("P18", 843.796, -0.45),
    ("P17", 846.725, -0.36),
    ("P16", 850.249, -0.27),
    ("P15", 854.538, -0.18),
    ("P14", 859.839, -0.09),
    ("P13", 866.502, 0.00),
    ("P12", 875.047, 0.09),
)

#: TiO band heads degrading to the red: (head nm, relative strength, decay length nm).
TIO_BANDS: tuple[tuple[float, float, float], ...] = (
    (843.2, 1.00, 6.0),  # delta (1,0) system heads, red tails reach the blue RVS edge
    (844.2, 0.70, 6.0),
    (845.2, 0.50, 6.0),
    (850.7, 0.35, 4.0),
    (856.9, 0.30, 4.0),
)

#: TiO depressions in the SED: (centre nm, Gaussian sigma nm, relative strength).
TIO_SED_BANDS: tuple[tuple[float, float, float], ...] = (
    (625.0, 20.0, 0.6),
    (670.0, 25.0, 0.8),
    (715.0, 20.0, 1.0),
    (770.0, 25.0, 0.8),
    (850.0, 25.0, 0.4),
    (890.0, 20.0, 0.6),
)

# --- SED / XP grid ----------------------------------------------------------------------
SED_GRID_MIN_NM = 320.0
SED_GRID_MAX_NM = 1060.0
SED_GRID_STEP_NM = 2.0
BALMER_EDGE_NM = 364.6
BALMER_EDGE_WIDTH_NM = 3.0  # logistic smoothing of the Balmer jump, nm
PASSBAND_EDGE_WIDTH_NM = 8.0  # logistic edge width of the passbands, nm
PASSBAND_LIMITS_NM = {"g": (330.0, 1050.0), "bp": (330.0, 680.0), "rp": (630.0, 1050.0)}
XP_BAND_GRID_NM = {"bp": (324.0, 690.0), "rp": (620.0, 1060.0)}  # support of the XP basis
XP_HERMITE_HALF_RANGE = 11.0  # pseudo-wavelength band edges at x = +-11 (~sqrt(2*54+1)+0.5)
EXTINCTION_REF_NM = 550.0
EXTINCTION_SLOPE = 1.3  # A(lambda) = A_V (lambda/550 nm)^-1.3
MAG_PER_NATS = 2.5 / math.log(10.0)  # 1.0857: sigma_mag = MAG_PER_NATS / (flux/error)
EXTINCTION_NATS_PER_MAG = 0.4 * math.log(10.0)

# --- XP sampled spectra (xp_sampled_flux, as GaiaXPy's calibrate gives them) --------------
#: GaiaXPy's default sampling of ``calibrate``: 336-1020 nm in 2 nm steps (343 samples).
XP_SAMPLED_MIN_NM = 336.0
XP_SAMPLED_MAX_NM = 1020.0
XP_SAMPLED_STEP_NM = 2.0
#: BP alone below the first wavelength, RP alone above the second, a raised-cosine weight in
#: between (GaiaXPy also merges the bands with smooth weights in their overlap).  The window
#: lies inside both supports (XP_BAND_GRID_NM overlap 620-690 nm) where both passbands are
#: above 99 % of their edge-free response (logistic edges: RP at 630 nm, BP at 680 nm).
XP_MERGE_NM = (640.0, 670.0)
PLANCK_H_J_S = 6.626_070_15e-34  # Planck constant, J s (exact, SI 2019)
C_M_S = 299_792_458.0  # speed of light, m/s (exact)
#: Gaia's telescope pupil (collecting) area, m^2: the area in the Gaia DR2/EDR3 passband
#: definitions (Evans et al. 2018; Riello et al. 2021, A&A 649, A3).
GAIA_PUPIL_AREA_M2 = 0.7278
#: Photon -> electron throughput of the demo's BP and RP at the peak of their relative
#: responses (_passbands; mirrors x prism x CCD QE), one fixed number per band.  Derived
#: once from the demo's own calibration: its band counts are SED x response x
#: 10^(0.4 (electron_zero_point - zero point)) x 2 nm, and its SED unit is fixed by the Sun
#: at 10 pc having the observed solar flux at 550 nm (SOLAR_FLUX_550NM_1AU); BP and RP
#: differ as their electron zero points (25.34, 24.76 mag) do (DEFAULT_PARAMS; an override
#: of sed.electron_zero_point rescales the sampled flux).  The test suite recomputes them.
#: (Real Gaia BP/RP peak throughputs are ~0.5-0.7.)
XP_THROUGHPUT: dict[str, float] = {"bp": 0.626, "rp": 0.583}
#: Solar spectral irradiance at 1 AU near 550 nm, W m^-2 nm^-1 (ASTM E-490 AM0 spectrum,
#: 1.86-1.88 over 545-555 nm): fixes XP_THROUGHPUT above.
SOLAR_FLUX_550NM_1AU = 1.87
AU_PER_10PC = 1.495_978_707e11 / 3.085_677_581_491_367e17  # (1 au) / (10 pc)

# --- position sampling --------------------------------------------------------------------
N_DIRECTIONS = 24  # candidate lines of sight per star (importance resampling)
N_DISTANCE_CELLS = 64  # distance cells per line of sight
POSITION_CHUNK = 512  # stars per chunk in the (n, K, J) grids
MAX_DISTANCE_PC = 40_000.0
MAX_CANDIDATE_BATCH = 3000  # candidates drawn at once (bounds memory of the SED arrays)
TRANSIT_SIGMAS_FOR_LIMIT = 3.0  # G_RVS limit: S/N floor reachable at +3 sigma transit scatter

# --- CRLB ---------------------------------------------------------------------------------
#: Central finite-difference steps (label units).  Small compared with label precisions,
#: large compared with float64 round-off of the model (relative flux changes >~1e-7).
CRLB_STEPS: dict[str, float] = {
    "teff": 1.0,  # K
    "logg": 0.005,  # dex
    "m_h": 0.005,  # dex
    "alpha_m": 0.005,  # dex
    "fe_h": 0.005,  # dex
    "rv_shift_kms": 0.05,  # km/s
    "mass": 0.005,  # Msun
    "distance_pc": 0.5,  # pc (relative step is used: 0.5 pc per kpc, see _perturb)
    "a_v": 0.005,  # mag
}
#: Optional Gaussian priors on nuisance parameters (1 sigma); inf = no prior, so that the
#: bound is purely the data's (and scales exactly as 1/snr).  A nuisance parameter that does
#: not affect a star's observables at all (e.g. mass for a dwarf's spectrum) is dropped.
CRLB_NUISANCE_PRIOR_SIGMA: dict[str, float] = {
    "rv_shift_kms": math.inf,
    "mass": math.inf,
    "distance_pc": math.inf,
    "a_v": math.inf,
}
CRLB_EIG_RTOL = 1e-12  # eigenvalues below this fraction of the largest are "unconstrained"
CRLB_UNCONSTRAINED = math.inf  # bound returned for an unconstrained label
CRLB_CHUNK = 128  # stars per chunk (Jacobians are (chunk, n_params, n_obs) float64)

DEFAULT_PARAMS: dict = {
    # rvs_spec_sig_to_noise floor of published DR3 spectra (paper Fig. 1)
    "snr_floor": 15.0,
    "population": {
        # fractions of n per population (OOD ones are for the observed sample only)
        "fractions": {
            "thin_disc": 0.66,
            "thick_disc": 0.24,
            "halo": 0.03,
            "ob_star": 0.02,
            "m_giant": 0.02,
            "cool_dwarf": 0.02,
            "binary": 0.01,
        },
        "giant_fraction": 0.70,  # log g < 3.5 among thin/thick/halo stars
        "red_clump_fraction_of_giants": 0.35,  # disc giants in the clump (none in the halo)
        "subgiant_fraction_of_dwarfs": 0.30,
        "binary_fraction_of_dwarfs": 0.03,  # in-population unresolved binaries (RUWE > 1.4)
        "thin_disc": {
            "m_h_mean": -0.05,
            "m_h_sigma": 0.22,  # dex, at R0
            "m_h_gradient_dex_per_kpc": -0.06,
            "alpha_at_solar": 0.02,
            "alpha_slope": -0.08,  # [a/M] = a0 + slope*[M/H]
            "alpha_sigma": 0.02,
            "giant_mass_median": 1.3,
            "giant_mass_lnsigma": 0.3,  # Msun
        },
        "thick_disc": {
            "m_h_mean": -0.5,
            "m_h_sigma": 0.25,
            "m_h_gradient_dex_per_kpc": 0.0,
            "alpha_plateau": 0.26,
            "alpha_knee_m_h": -0.7,  # plateau below the knee
            "alpha_slope_above_knee": -0.17,  # d[a/M]/d[M/H] above the knee
            "alpha_sigma": 0.025,
            "giant_mass_median": 1.0,
            "giant_mass_lnsigma": 0.15,
        },
        "halo": {
            "m_h_mean": -1.4,
            "m_h_sigma": 0.5,
            "m_h_min": -2.5,
            "m_h_max": -0.5,
            "alpha_mean": 0.30,
            "alpha_sigma": 0.05,
            "giant_mass_median": 0.85,
            "giant_mass_lnsigma": 0.1,
        },
        "m_h_limits": [-2.5, 0.5],  # dex, clip of all [M/H]
        "fe_h_scatter": 0.03,  # [Fe/H] = [M/H] + N(0, this)
        "dwarf_teff_mean": 5700.0,
        "dwarf_teff_sigma": 550.0,  # K
        "dwarf_teff_limits": [4300.0, 6800.0],
        "dwarf_logg_sigma": 0.08,
        "subgiant_logg_limits": [3.5, 4.1],
        "rgb_logg_limits": [1.0, 3.45],
        "rgb_teff_at_logg25": 4650.0,  # K, solar [M/H]
        "rgb_teff_per_logg": 380.0,  # K/dex
        "rgb_teff_per_m_h": -300.0,  # K/dex (metal-poor giants are hotter)
        "rgb_teff_sigma": 70.0,
        "rc_teff_mean": 4800.0,
        "rc_teff_sigma": 60.0,
        "rc_teff_per_m_h": -150.0,
        "rc_logg_mean": 2.45,
        "rc_logg_sigma": 0.06,
        "vsini_median_kms": 3.0,
        "vsini_lnsigma": 0.4,
        "ob_star": {
            "teff_limits": [10000.0, 30000.0],
            "logg_limits": [3.5, 4.3],
            "vsini_median_kms": 120.0,
            "vsini_lnsigma": 0.5,
            "scale_height_kpc": 0.1,
        },
        "m_giant": {"teff_limits": [3200.0, 3900.0], "logg_limits": [0.0, 1.2]},
        "cool_dwarf": {
            "teff_limits": [3300.0, 4100.0],
            "logg_limits": [4.6, 5.0],
            "max_distance_pc": 200.0,
        },
        "binary": {"primary_teff_limits": [4800.0, 6000.0], "mass_ratio_limits": [0.6, 1.0]},
        "binaries": {
            "mass_ratio_limits": [0.3, 1.0],  # in-population binaries
            "relative_rv_kms": [20.0, 80.0],  # |v2 - v1| uniform in this range
            "ruwe_limits": [1.4, 6.0],  # log-uniform
        },
    },
    "galaxy": {
        "thin_disc": {"scale_length_kpc": 2.6, "scale_height_kpc": 0.3},
        "thick_disc": {"scale_length_kpc": 2.0, "scale_height_kpc": 0.9},
        "halo": {"power_law_index": 3.5, "flattening_q": 0.7, "core_radius_kpc": 1.0},
        "dust": {
            "a_v_per_kpc": 0.8,  # mag/kpc in the plane
            "scale_height_kpc": 0.12,
            "lnsigma": 0.3,  # lognormal star-to-star scatter
            "a_rvs_per_a_v": 0.56,  # A(858 nm)/A_V for the visibility limit
        },
        "bright_limit_grvs": 2.5,  # brighter stars saturate (no RVS spectrum)
    },
    "spectrum": {
        "microturbulence_kms": [1.0, 0.25],  # xi = a + b (4.5 - log g), km/s
        "rv_shift_sigma_kms": 1.0,  # residual RV shift (fraction of a 3.49 km/s pixel)
        "paschen_log_eta_peak": 0.3,  # log10 central optical depth of P13 at the peak
        "paschen_teff_peak": 9500.0,  # K
        "paschen_log_width_cool": 0.117,  # dex in log Teff (cool side, steep)
        "paschen_log_width_hot": 0.5,  # dex in log Teff (hot side, slow)
        "paschen_log_damping": -0.8,
        "ion_fade_teff": {"Ca II": 11000.0, "Cr II": 14000.0, "V II": 12000.0},  # K
        "tio_tau_ref": 0.04,  # TiO optical depth scale at tio_teff_ref
        "tio_teff_ref": 3900.0,  # K
        "tio_teff_scale": 200.0,  # K (e-folding toward cooler Teff)
        "tio_teff_off": 4200.0,  # K, no TiO above this
        "nitrogen_dredge_up": [0.15, 0.25],  # [N/M] = a + b (mass - 1) in giants, dex
        "nitrogen_dredge_up_max": 0.8,
        "nan_edges": {
            "p_zero": 0.6,  # probability of no NaN pixel at an edge
            "max_pixels": 40,  # otherwise uniform in 1..max_pixels
        },
    },
    "sed": {
        "blanketing_tau": 0.35,  # blue line blanketing optical depth, solar star at 320 nm
        "blanketing_scale_nm": 100.0,  # e-folding length toward the red, nm
        "blanketing_teff_power": 3.0,  # tau ~ (Teff_sun / Teff)^p
        "blanketing_alpha_weight": 0.5,  # tau ~ 10^([M/H] + w [alpha/M])
        "balmer_jump_peak_mag": 1.3,
        "balmer_jump_teff_peak": 9500.0,
        "balmer_jump_log_width": 0.15,
        "balmer_jump_logg_coeff": 0.2,  # BJ *= 1 + c (4 - log g)
        "tio_sed_tau_scale": 0.5,  # SED TiO depth relative to the RVS TiO optical depth
        "sun_abs_mag": {"g": 4.67, "bp": 5.03, "rp": 4.21},  # solar M_G, BP-RP = 0.82
        "electron_zero_point": {"g": 25.69, "bp": 25.34, "rp": 24.76},  # mag for 1 e-/s
    },
    "photometry": {
        "grvs_colour_terms": [-0.04, -0.10],  # G_RVS = G_RP + a + b (BP - RP)
        "exposure_s": {"g": 1600.0, "bp": 180.0, "rp": 180.0},  # effective, all transits
        "background_e_per_s": {"g": 200.0, "bp": 2000.0, "rp": 2000.0},
        "relative_floor": {"g": 0.0006, "bp": 0.0013, "rp": 0.0010},
        "xp_exposure_s": 180.0,
        "xp_background_e_per_s": 50.0,  # per basis function
    },
    "astrometry": {
        "parallax_sigma_mas": [0.015, 0.03],  # sigma = a + b 10^(0.2 (G - 15))
        "ruwe_lnsigma": 0.1,
    },
    # An observed field unlike the training stars (identity by default): a star drawn at
    # distance d is placed at distance_factor x d on the same line of sight, seen by a
    # survey that reaches distance_factor times farther at the same S/N (its S/N law moved
    # by 5 log10 distance_factor mag), with a_v_factor x the extinction drawn at d, its
    # parallax error x parallax_error_factor and its RVS S/N x snr_factor.  Distance and
    # extinction are thus separate knobs.  The demo survey's ``shift`` section sets it.
    "observed_shift": {
        "distance_factor": 1.0,
        "a_v_factor": 1.0,
        "parallax_error_factor": 1.0,
        "snr_factor": 1.0,
    },
    # Gaia DR3 radial_velocity_error [km/s] written to gaia_source (radial_velocity_error:
    # eVrad = sqrt(floor^2 + (at_snr_ref * snr_ref / snr * hot * lognormal scatter)^2), hot
    # = (Teff / hot_teff)^hot_power above hot_teff, else 1).  Katz et al. 2023 (A&A 674, A5,
    # Gaia DR3 radial velocities): median formal precision 1.3 km/s at G_RVS = 12 and
    # 6.4 km/s at G_RVS = 14, larger for hot stars (few, broad lines); 0.11 km/s is the
    # calibration floor DR2/DR3 add in quadrature (Katz et al. 2019; 2023).  The demo's
    # median S/N at G_RVS = 12 is snr.snr_at_ref = 20, so 1.3 km/s at S/N 20; the 1/S/N law
    # then gives ~6.5 km/s at S/N 4 (G_RVS ~ 14), as DR3.  Drawn from its own generator: no
    # other demo value depends on it; enabled false writes no such column (a survey
    # without it).  Not tied to the spectra's residual shift spectrum.rv_shift_sigma_kms.
    "rv_error": {
        "enabled": True,
        "at_snr_ref_kms": 1.3,  # km/s at S/N = snr_ref
        "snr_ref": 20.0,
        "floor_kms": 0.11,  # km/s, in quadrature
        "hot_teff": 7000.0,  # K
        "hot_power": 2.0,
        "lnsigma": 0.25,  # star-to-star scatter (transits, crowding, template mismatch)
    },
    "snr": {
        "snr_at_ref": 20.0,  # median rvs_spec_sig_to_noise at G_RVS = grvs_ref
        "grvs_ref": 12.0,
        "background_ratio": 1.0,  # background / source counts at grvs_ref
        "transit_lnsigma": 0.3,  # lognormal scatter (number of transits, crowding)
        "candidate_selection_slope": 0.15,  # extra weight 10^(-s (G_RVS - grvs_ref))
    },
}


# ==========================================================================================
# helpers
# ==========================================================================================
def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _theta(teff: np.ndarray) -> np.ndarray:
    return THETA_NUM / np.asarray(teff, dtype=np.float64)


def _merge(base: dict, override: dict) -> dict:
    out = copy.deepcopy(base)
    for key, val in override.items():
        if isinstance(val, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], val)
        else:
            out[key] = val
    return out


def merge_params(overrides: dict | None) -> dict:
    """:data:`DEFAULT_PARAMS` with ``overrides`` (``config["demo"]["physics"]``) merged in.

    Raises ``ValueError`` naming the first key path that :data:`DEFAULT_PARAMS` lacks, so a
    typo in the configuration cannot be silently ignored.
    """

    def check(base: dict, over: dict, prefix: str) -> None:
        for key, val in over.items():
            if key not in base:
                raise ValueError(
                    f"demo.physics.{prefix}{key} is not a parameter of the demo "
                    "physics (see gaiacnn.demo.physics.DEFAULT_PARAMS)"
                )
            if isinstance(val, dict) and isinstance(base[key], dict):
                check(base[key], val, f"{prefix}{key}.")

    check(DEFAULT_PARAMS, overrides or {}, "")
    return _with_defaults(overrides or None)


def _with_defaults(params: dict | None) -> dict:
    if params is None or params is DEFAULT_PARAMS:
        return DEFAULT_PARAMS
    return _merge(DEFAULT_PARAMS, params)


@functools.lru_cache(maxsize=1)
def _rvs_grid() -> np.ndarray:
    grid = rvs_wavelength_nm()
    grid.setflags(write=False)
    return grid


def _lsf_sigma_nm(wavelength_nm: float) -> float:
    return wavelength_nm / RVS_RESOLVING_POWER / (2.0 * math.sqrt(2.0 * math.log(2.0)))


def _pixel(wavelength_nm: float) -> float:
    return (wavelength_nm - RVS_WAVELENGTH_MIN_NM) / RVS_WAVELENGTH_STEP_NM


def _nitrogen_enhancement(logg: np.ndarray, mass: np.ndarray, params: dict) -> np.ndarray:
    """[N/M] from first dredge-up: zero on the main sequence, rising with mass in giants."""
    a, b = params["spectrum"]["nitrogen_dredge_up"]
    giant_weight = np.clip((3.8 - logg) / 0.6, 0.0, 1.0)
    n_enh = np.clip(a + b * (mass - 1.0), 0.0, params["spectrum"]["nitrogen_dredge_up_max"])
    return giant_weight * n_enh


# ==========================================================================================
# RVS spectra
# ==========================================================================================
def line_log_eta(labels: dict[str, np.ndarray], params: dict = DEFAULT_PARAMS) -> np.ndarray:
    """log10 central line-to-continuum optical depth of every LINE_TABLE line.

    Args:
        labels: teff [K], logg [dex], m_h, alpha_m, fe_h [dex], mass [Msun]; shape (n,).
    Returns:
        (n_lines, n) float64.
    """
    params = _with_defaults(params)
    teff = np.asarray(labels["teff"], dtype=np.float64)
    logg = np.asarray(labels["logg"], dtype=np.float64)
    d_theta = _theta(teff) - THETA_NUM / REF_TEFF
    d_logg = logg - REF_LOGG
    abund = {
        "fe": np.asarray(labels["fe_h"], dtype=np.float64),
        "alpha": np.asarray(labels["m_h"]) + np.asarray(labels["alpha_m"]),
        "metal": np.asarray(labels["m_h"], dtype=np.float64),
        "nitrogen": np.asarray(labels["m_h"])
        + _nitrogen_enhancement(logg, np.asarray(labels["mass"]), params),
    }
    fade = params["spectrum"]["ion_fade_teff"]
    # above ~7000 K hydrogen bound-free opacity (n = 3, 12.09 eV) takes over from H-
    theta_sw = THETA_NUM / HOT_CONTINUUM_TEFF
    hot_continuum = -(H_N3_EV - H_MINUS_EV) * np.clip(theta_sw - _theta(teff), 0.0, None)
    out = np.empty((len(LINE_TABLE), teff.size))
    for i, (_, species, group, kind, chi, ion_e, log_eta_ref, _, _) in enumerate(LINE_TABLE):
        log_eta = log_eta_ref + abund[group]
        if kind == "neutral_minority":
            log_eta = log_eta + d_theta * (ion_e - chi - H_MINUS_EV)
        elif kind == "neutral_majority":
            log_eta = log_eta - d_theta * (chi + H_MINUS_EV) + ION_GRAVITY_COEFF * d_logg
        elif kind == "ion_majority":
            log_eta = log_eta - d_theta * (chi + H_MINUS_EV) + ION_GRAVITY_COEFF * d_logg
            theta_half = THETA_NUM / fade[species]
            x = np.clip((theta_half - _theta(teff)) * ion_e, -50.0, 50.0)
            log_eta = log_eta - np.log10(1.0 + 10.0**x)
        elif kind == "molecule":
            log_eta = log_eta + d_theta * CN_DISSOCIATION_COEFF
        else:  # pragma: no cover - table is static
            raise ValueError(kind)
        out[i] = np.clip(log_eta + hot_continuum, *LOG_ETA_CLIP)
    return out


def _paschen_log_eta(teff: np.ndarray, params: dict) -> np.ndarray:
    """log10 central optical depth of P13 vs Teff (n,): rises above ~7000 K, peaks ~A0."""
    sp = params["spectrum"]
    x = np.log10(teff) - math.log10(sp["paschen_teff_peak"])
    width = np.where(x < 0.0, sp["paschen_log_width_cool"], sp["paschen_log_width_hot"])
    return np.clip(sp["paschen_log_eta_peak"] - (x / width) ** 2, *LOG_ETA_CLIP)


def _tio_tau(teff: np.ndarray, m_h: np.ndarray, params: dict) -> np.ndarray:
    """TiO optical depth scale (n,): steep rise below ~3900 K, zero above tio_teff_off."""
    sp = params["spectrum"]
    on = np.clip((sp["tio_teff_off"] - teff) / (sp["tio_teff_off"] - sp["tio_teff_ref"]), 0.0, 1.0)
    expo = np.clip((sp["tio_teff_ref"] - teff) / sp["tio_teff_scale"], -50.0, 50.0)
    return sp["tio_tau_ref"] * 10.0**m_h * np.exp(expo) * on


def _doppler_sigma_kms(
    teff: np.ndarray, logg: np.ndarray, vsini: np.ndarray, params: dict, atomic_mass: float = 56.0
) -> np.ndarray:
    a, b = params["spectrum"]["microturbulence_kms"]
    xi = a + b * np.clip(4.5 - logg, 0.0, 4.5)
    thermal2 = K_B * teff / (atomic_mass * AMU) / 1e6  # (km/s)^2
    # rotation: Gaussian approximation of the rotational kernel (sigma ~ 0.6 vsini)
    return np.sqrt(thermal2 + 0.5 * xi**2 + (0.6 * vsini) ** 2)


@functools.lru_cache(maxsize=1)
def _cog_table() -> tuple[np.ndarray, np.ndarray]:
    """Curve of growth of a pure-Doppler line: (log10 eta grid, W / sigma_D).

    W / sigma_D = integral of 1 - exp(-eta exp(-x^2 / 2)) dx (x in Doppler sigmas).
    """
    log_eta = np.linspace(LOG_ETA_CLIP[0], LOG_ETA_CLIP[1], 321)
    x = np.linspace(-12.0, 12.0, 4801)
    prof = np.exp(-0.5 * x**2)
    w = np.array([np.sum(-np.expm1(-(10.0**le) * prof)) * (x[1] - x[0]) for le in log_eta])
    log_eta.setflags(write=False)
    w.setflags(write=False)
    return log_eta, w


def _line_window(
    grid: np.ndarray, centre: np.ndarray, half_window: float
) -> tuple[int, int, np.ndarray] | None:
    """Pixel range [j0, j1) within ``half_window`` nm of every star's ``centre`` (n,), and
    the offsets ``dx`` (n, j1 - j0) [nm] of those pixels; None if it misses the grid."""
    lo = float(np.min(centre)) - half_window
    hi = float(np.max(centre)) + half_window
    j0 = max(0, math.floor(_pixel(lo)))
    j1 = min(grid.size, math.ceil(_pixel(hi)) + 1)
    if j1 <= j0:
        return None
    return j0, j1, grid[None, j0:j1] - centre[:, None]


def _add_gaussian_line(
    flux: np.ndarray,
    grid: np.ndarray,
    centre: np.ndarray,
    depth: np.ndarray,
    sigma: np.ndarray,
    half_window: float,
) -> None:
    """Multiply ``flux`` in place by 1 - depth exp(-(lambda - centre)^2 / 2 sigma^2)."""
    window = _line_window(grid, centre, half_window)
    if window is None:
        return
    j0, j1, dx = window
    flux[:, j0:j1] *= 1.0 - depth[:, None] * np.exp(-0.5 * (dx / sigma[:, None]) ** 2)


def _add_line(
    flux: np.ndarray,
    grid: np.ndarray,
    centre: np.ndarray,
    eta: np.ndarray,
    sigma: np.ndarray,
    half_window: float,
    d_max: float,
    wing_amp: np.ndarray | None = None,
    gamma: np.ndarray | None = None,
) -> None:
    """Multiply ``flux`` (n, n_pix) in place by one line's transmission 1 - depth(lambda).

    depth = d_max tau / (1 + tau), tau = eta [exp(-x^2/2s^2) + A gamma^2/(x^2 + gamma^2)].
    Only pixels within ``half_window`` (nm, plus the largest shift) of the rest wavelength
    are touched.
    """
    window = _line_window(grid, centre, half_window)
    if window is None:
        return
    j0, j1, dx = window
    tau = np.exp(-0.5 * (dx / sigma[:, None]) ** 2)
    if wing_amp is not None:
        g2 = (gamma**2)[:, None]
        tau += wing_amp[:, None] * g2 / (dx**2 + g2)
    tau *= eta[:, None]
    flux[:, j0:j1] *= 1.0 - d_max * tau / (1.0 + tau)


def _rvs_flux_group(labels: dict[str, np.ndarray], rv_kms: np.ndarray, params: dict) -> np.ndarray:
    grid = _rvs_grid()
    n = rv_kms.size
    flux = np.ones((n, grid.size))
    if n == 0:
        return flux
    teff = labels["teff"]
    logg = labels["logg"]
    vsini = labels["vsini_kms"]
    doppler = 1.0 + rv_kms / C_KMS
    sig_v = _doppler_sigma_kms(teff, logg, vsini, params)
    sig_intr = _doppler_sigma_kms(teff, logg, np.zeros_like(vsini), params)
    log_eta = line_log_eta(labels, params)
    cog_x, cog_w = _cog_table()
    gamma = DAMPING_GAMMA_NM * 10.0 ** (DAMPING_GRAVITY_COEFF * (logg - REF_LOGG))
    for i, (lam, _, _, kind, _, _, _, log_damp, window) in enumerate(LINE_TABLE):
        eta = 10.0 ** log_eta[i]
        if np.max(eta) < NEGLIGIBLE_ETA:
            continue
        sigma = np.sqrt(_lsf_sigma_nm(lam) ** 2 + (lam * sig_v / C_KMS) ** 2)
        half = max(MIN_WINDOW_NM, CORE_WINDOW_SIGMAS * float(np.max(sigma)), window)
        d_max = MOLECULE_DEPTH_MAX if kind == "molecule" else LINE_DEPTH_MAX
        if math.isnan(log_damp):
            # curve of growth with the intrinsic Doppler width, rendered at the LSF
            ew = lam * sig_intr / C_KMS * np.interp(log_eta[i], cog_x, cog_w)
            depth = np.minimum(ew / (math.sqrt(2.0 * math.pi) * sigma), d_max)
            _add_gaussian_line(flux, grid, lam * doppler, depth, sigma, half)
        else:
            amp = np.full(n, 10.0**log_damp)
            _add_line(flux, grid, lam * doppler, eta, sigma, half, d_max, amp, gamma)
    # Paschen lines (Stark-broadened cores and wings)
    sp = params["spectrum"]
    log_eta_p = _paschen_log_eta(teff, params)
    if np.max(log_eta_p) > math.log10(NEGLIGIBLE_ETA):
        sig_h = _doppler_sigma_kms(teff, logg, vsini, params, atomic_mass=1.008)
        gamma_p = PASCHEN_GAMMA_NM * 10.0 ** (PASCHEN_GAMMA_LOGG_COEFF * (logg - 4.0))
        amp = np.full(n, 10.0 ** sp["paschen_log_damping"])
        for _, lam, rel in PASCHEN_LINES:
            sigma = np.sqrt(
                _lsf_sigma_nm(lam) ** 2 + PASCHEN_STARK_SIGMA_NM**2 + (lam * sig_h / C_KMS) ** 2
            )
            eta = 10.0 ** (log_eta_p + rel)
            _add_line(
                flux,
                grid,
                lam * doppler,
                eta,
                sigma,
                PASCHEN_WINDOW_NM,
                LINE_DEPTH_MAX,
                amp,
                gamma_p,
            )
    # TiO bands (heads degrading to the red, with a rotational ripple)
    tio = _tio_tau(teff, labels["m_h"], params)
    cool = np.flatnonzero(tio > 0.0)
    if cool.size:
        lsf = _lsf_sigma_nm(858.0)
        tau = np.zeros((cool.size, grid.size))
        for head, rel, decay in TIO_BANDS:
            head_shifted = head * doppler[cool, None]
            dx = grid[None, :] - head_shifted
            onset = _sigmoid(dx / (0.6 * lsf))
            ripple = 1.0 + TIO_RIPPLE_AMPLITUDE * np.cos(2.0 * np.pi * dx / TIO_RIPPLE_PERIOD_NM)
            tau += rel * onset * np.exp(-np.clip(dx, 0.0, None) / decay) * ripple
        flux[cool] *= np.exp(-tio[cool, None] * tau)
    return flux


def _rvs_flux(
    labels: dict[str, np.ndarray], rv_kms: np.ndarray, params: dict = DEFAULT_PARAMS
) -> np.ndarray:
    """Noise-free normalised RVS flux (n, 2401) float64 of single stars.

    labels: teff, logg, m_h, alpha_m, fe_h, mass, vsini_kms (n,); rv_kms (n,) Doppler shift.
    Stars are processed in two groups (slow / fast rotators) so that the line windows of
    slow rotators stay narrow.
    """
    params = _with_defaults(params)
    n = np.asarray(rv_kms).size
    flux = np.ones((n, RVS_N_PIXELS))
    vsini = np.asarray(labels["vsini_kms"], dtype=np.float64)
    for broad in (False, True):
        idx = np.flatnonzero((vsini > BROAD_VSINI_KMS) == broad)
        if idx.size == 0:
            continue
        sub = {
            k: np.asarray(labels[k], dtype=np.float64)[idx]
            for k in ("teff", "logg", "m_h", "alpha_m", "fe_h", "mass", "vsini_kms")
        }
        flux[idx] = _rvs_flux_group(sub, np.asarray(rv_kms, dtype=np.float64)[idx], params)
    return flux


def equivalent_width(flux: np.ndarray, centre_nm: float, half_width_nm: float) -> np.ndarray:
    """Equivalent width [nm] = sum (1 - F) dλ over |λ - centre| <= half_width; flux (n, 2401)."""
    grid = _rvs_grid()
    sel = np.abs(grid - centre_nm) <= half_width_nm + 1e-9
    return np.nansum(1.0 - np.asarray(flux)[..., sel], axis=-1) * RVS_WAVELENGTH_STEP_NM


# ==========================================================================================
# SED, photometry, XP
# ==========================================================================================
@functools.lru_cache(maxsize=1)
def _sed_grid() -> np.ndarray:
    n = round((SED_GRID_MAX_NM - SED_GRID_MIN_NM) / SED_GRID_STEP_NM) + 1
    grid = SED_GRID_MIN_NM + SED_GRID_STEP_NM * np.arange(n)
    grid.setflags(write=False)
    return grid


@functools.lru_cache(maxsize=1)
def _passbands() -> dict[str, np.ndarray]:
    """Photon-counting responses (n_sed,) of G, BP, RP: logistic edges x a smooth QE shape."""
    lam = _sed_grid()
    out = {}
    for band, (lo, hi) in PASSBAND_LIMITS_NM.items():
        edges = _sigmoid((lam - lo) / PASSBAND_EDGE_WIDTH_NM * 4.0) * _sigmoid(
            (hi - lam) / PASSBAND_EDGE_WIDTH_NM * 4.0
        )
        if band == "g":
            shape = np.exp(-0.5 * ((lam - 640.0) / 260.0) ** 2)
        elif band == "bp":
            shape = 0.6 + 0.4 * (lam - lo) / (hi - lo)
        else:
            shape = 1.0 - 0.6 * ((lam - lo) / (hi - lo)) ** 2
        resp = edges * shape
        resp.setflags(write=False)
        out[band] = resp
    return out


def _sed_photons_10pc(
    teff: np.ndarray,
    logg: np.ndarray,
    m_h: np.ndarray,
    alpha_m: np.ndarray,
    mass: np.ndarray,
    a_v: np.ndarray | None,
    params: dict,
) -> np.ndarray:
    """Photon SED (n, n_sed) at 10 pc in arbitrary fixed units (solar star ~1 at 550 nm).

    Blackbody x surface area (R^2 = M / g) x blue line blanketing x Balmer jump x TiO x
    extinction A(lambda) = A_V (lambda / 550 nm)^-1.3.
    """
    sp = params["sed"]
    lam = _sed_grid()[None, :]
    teff = np.asarray(teff, dtype=np.float64)[:, None]
    logg = np.asarray(logg, dtype=np.float64)[:, None]
    m_h = np.asarray(m_h, dtype=np.float64)[:, None]
    alpha_m = np.asarray(alpha_m, dtype=np.float64)[:, None]
    mass = np.asarray(mass, dtype=np.float64)[:, None]
    radius2 = mass * 10.0 ** (LOGG_SUN - logg)
    x = np.clip(C2_NM_K / (lam * teff), 1e-6, 700.0)
    planck_photons = (lam / 550.0) ** -4 / np.expm1(x) * np.expm1(C2_NM_K / (550.0 * TEFF_SUN))
    tau = (
        sp["blanketing_tau"]
        * 10.0 ** (m_h + sp["blanketing_alpha_weight"] * alpha_m)
        * (TEFF_SUN / teff) ** sp["blanketing_teff_power"]
        * np.exp(-(lam - SED_GRID_MIN_NM) / sp["blanketing_scale_nm"])
    )
    lt = np.log10(teff) - math.log10(sp["balmer_jump_teff_peak"])
    bj = sp["balmer_jump_peak_mag"] * np.exp(-((lt / sp["balmer_jump_log_width"]) ** 2))
    bj = np.clip(bj * (1.0 + sp["balmer_jump_logg_coeff"] * (4.0 - logg)), 0.0, None)
    tau = tau + EXTINCTION_NATS_PER_MAG * bj * _sigmoid(
        (BALMER_EDGE_NM - lam) / BALMER_EDGE_WIDTH_NM * 4.0
    )
    tio = _tio_tau(teff[:, 0], m_h[:, 0], params)[:, None] * sp["tio_sed_tau_scale"]
    if np.any(tio > 0.0):
        prof = np.zeros_like(lam)
        for centre, width, rel in TIO_SED_BANDS:
            prof = prof + rel * np.exp(-0.5 * ((lam - centre) / width) ** 2)
        tau = tau + tio * prof
    if a_v is not None:
        a_v = np.asarray(a_v, dtype=np.float64)[:, None]
        tau = tau + EXTINCTION_NATS_PER_MAG * a_v * (lam / EXTINCTION_REF_NM) ** -EXTINCTION_SLOPE
    return radius2 * planck_photons * np.exp(-tau)


@functools.lru_cache(maxsize=8)
def _zero_points(sun_g: float, sun_bp: float, sun_rp: float) -> dict[str, float]:
    """Magnitude zero points making the Sun at 10 pc have the requested absolute magnitudes."""
    one = np.ones(1)
    sed = _sed_photons_10pc(
        one * TEFF_SUN, one * LOGG_SUN, one * 0.0, one * 0.0, one, None, DEFAULT_PARAMS
    )[0]
    bands = _passbands()
    target = {"g": sun_g, "bp": sun_bp, "rp": sun_rp}
    return {
        b: target[b] + 2.5 * math.log10(float(np.sum(sed * bands[b])) * SED_GRID_STEP_NM)
        for b in bands
    }


def _band_mags_10pc(sed: np.ndarray, params: dict) -> dict[str, np.ndarray]:
    s = params["sed"]["sun_abs_mag"]
    zps = _zero_points(s["g"], s["bp"], s["rp"])
    bands = _passbands()
    return {
        b: -2.5 * np.log10(np.maximum(sed @ bands[b] * SED_GRID_STEP_NM, 1e-300)) + zps[b]
        for b in bands
    }


@functools.lru_cache(maxsize=2)
def xp_basis(band: str) -> tuple[np.ndarray, np.ndarray]:
    """Fixed orthonormal Gauss–Hermite basis of one XP band.

    Hermite functions psi_k(x), k = 0..54, of a pseudo-wavelength x that maps the band's
    support (XP_BAND_GRID_NM) linearly onto [-XP_HERMITE_HALF_RANGE, +XP_HERMITE_HALF_RANGE],
    sampled on the SED grid and orthonormalised (QR, sign fixed so each function's first
    significant lobe is positive).

    Returns:
        (index of the SED-grid points in the band (m,), basis (m, 55) with basis.T @ basis = I).
    """
    lo, hi = XP_BAND_GRID_NM[band]
    lam = _sed_grid()
    idx = np.flatnonzero((lam >= lo - 1e-9) & (lam <= hi + 1e-9))
    x = (lam[idx] - 0.5 * (lo + hi)) / (0.5 * (hi - lo)) * XP_HERMITE_HALF_RANGE
    psi = np.empty((idx.size, XP_N_COEFFICIENTS))
    psi[:, 0] = math.pi**-0.25 * np.exp(-0.5 * x**2)
    psi[:, 1] = math.sqrt(2.0) * x * psi[:, 0]
    for k in range(1, XP_N_COEFFICIENTS - 1):
        psi[:, k + 1] = (
            math.sqrt(2.0 / (k + 1)) * x * psi[:, k] - math.sqrt(k / (k + 1)) * psi[:, k - 1]
        )
    q, r = np.linalg.qr(psi)
    q = q * np.sign(np.diag(r))[None, :]
    q.setflags(write=False)
    idx.setflags(write=False)
    return idx, q


def _xp_coefficients(
    sed_obs: np.ndarray, mags: dict[str, np.ndarray], params: dict
) -> dict[str, np.ndarray]:
    """XP coefficients (n, 55) of BP and RP: projection of the band's photon counts per
    SED bin, scaled so their sum equals 10^(0.4 (ZP_e - m)) e-/s, onto xp_basis(band)."""
    zpe = params["sed"]["electron_zero_point"]
    bands = _passbands()
    out = {}
    for band in ("bp", "rp"):
        idx, basis = xp_basis(band)
        counts = sed_obs[:, idx] * bands[band][idx]
        total = np.maximum(counts.sum(axis=1), 1e-300)
        scale = 10.0 ** (0.4 * (zpe[band] - mags[band])) / total
        out[band] = (counts * scale[:, None]) @ basis
        out[band + "_counts"] = counts * scale[:, None]
    return out


def xp_sampled_wavelength_nm() -> np.ndarray:
    """GaiaXPy's default sampling grid [nm]: 336-1020 nm in 2 nm steps, (343,) float64."""
    n = round((XP_SAMPLED_MAX_NM - XP_SAMPLED_MIN_NM) / XP_SAMPLED_STEP_NM) + 1
    return XP_SAMPLED_MIN_NM + XP_SAMPLED_STEP_NM * np.arange(n)


def _merge_weight_bp(wavelength_nm: np.ndarray) -> np.ndarray:
    """Weight of BP in the sampled spectrum: 1 below XP_MERGE_NM, 0 above, raised cosine in
    between (RP gets 1 - weight)."""
    lo, hi = XP_MERGE_NM
    t = np.clip((np.asarray(wavelength_nm, dtype=np.float64) - lo) / (hi - lo), 0.0, 1.0)
    return 0.5 * (1.0 + np.cos(np.pi * t))


@functools.lru_cache(maxsize=4)
def _xp_design_matrices(grid: tuple[float, ...]) -> dict[str, np.ndarray]:
    """(K, 55) matrices D_band with sampled flux = bp @ D_bp.T + rp @ D_rp.T [W m^-2 nm^-1].

    Column k of D_band is basis function k of xp_basis(band), in e-/s per SED bin, divided by
    the bin width, the pupil area, the band's throughput and relative response (photons
    s^-1 m^-2 nm^-1), linearly interpolated from the SED grid to ``grid``, times the photon
    energy h c / lambda and the band's merge weight.
    """
    lam = _sed_grid()
    wl = np.asarray(grid, dtype=np.float64)
    w_bp = _merge_weight_bp(wl)
    weights = {"bp": w_bp, "rp": 1.0 - w_bp}
    energy_j = PLANCK_H_J_S * C_M_S / (wl * 1e-9)
    responses = _passbands()
    out = {}
    for band in ("bp", "rp"):
        idx, basis = xp_basis(band)
        lam_b = lam[idx]
        used = weights[band] > 0.0
        outside = used & ((wl < lam_b[0] - 1e-9) | (wl > lam_b[-1] + 1e-9))
        if np.any(outside):
            raise ValueError(
                f"xp_sampled_flux: {wl[outside][0]:g} nm needs {band.upper()}, whose support "
                f"is {lam_b[0]:g}-{lam_b[-1]:g} nm"
            )
        collect = GAIA_PUPIL_AREA_M2 * XP_THROUGHPUT[band] * responses[band][idx]
        photons = basis / (SED_GRID_STEP_NM * collect)[:, None]
        # Linear interpolation matrix (K, m) from the band's SED-grid points to the grid.
        x = np.clip(wl, lam_b[0], lam_b[-1])
        j = np.clip(np.searchsorted(lam_b, x, side="right") - 1, 0, lam_b.size - 2)
        f = (x - lam_b[j]) / (lam_b[j + 1] - lam_b[j])
        interp = np.zeros((wl.size, lam_b.size))
        rows = np.arange(wl.size)
        interp[rows, j] = 1.0 - f
        interp[rows, j + 1] += f
        design = (interp @ photons) * (energy_j * weights[band] * used)[:, None]
        design.setflags(write=False)
        out[band] = design
    return out


def xp_sampled_flux(
    bp_coefficients: np.ndarray,
    rp_coefficients: np.ndarray,
    wavelength_nm: np.ndarray | None = None,
) -> np.ndarray:
    """XP sampled spectra from XP coefficients, as GaiaXPy's ``calibrate`` gives them.

    Args:
        bp_coefficients, rp_coefficients: (n, 55) coefficients of :func:`xp_basis` ("bp",
            "rp") [e-/s per 2 nm SED bin, as in ``observed``; noise included].
        wavelength_nm: (K,) sampling grid [nm], default :func:`xp_sampled_wavelength_nm`
            (336-1020 nm, 2 nm).  BP alone is used below XP_MERGE_NM, RP alone above,
            a smooth weight in between; a point needing a band outside that band's support
            (XP_BAND_GRID_NM) is refused with ValueError.

    Returns:
        (n, K) float64 absolute flux density F_lambda [W m^-2 nm^-1]: the Gauss-Hermite
        expansion evaluated on the grid (photon counts per nm), divided by the pupil area
        GAIA_PUPIL_AREA_M2, the band's throughput XP_THROUGHPUT and relative passband
        response, times the photon energy h c / lambda.  The coefficients' noise propagates
        (faint or red stars can have negative samples, as real XP spectra).  A star with a
        non-finite coefficient in either band gets an all-NaN row.  Order of magnitude:
        ~1e-17 near 600 nm at G = 15, x 10^(-0.4 dG) with G.
    """
    grid = xp_sampled_wavelength_nm() if wavelength_nm is None else wavelength_nm
    design = _xp_design_matrices(tuple(float(v) for v in np.asarray(grid, dtype=np.float64)))
    bp = np.asarray(bp_coefficients, dtype=np.float64)
    rp = np.asarray(rp_coefficients, dtype=np.float64)
    if bp.ndim != 2 or bp.shape != rp.shape or bp.shape[1] != XP_N_COEFFICIENTS:
        raise ValueError(
            f"xp_sampled_flux: coefficients of shape (n, {XP_N_COEFFICIENTS}) expected, "
            f"got BP {bp.shape} and RP {rp.shape}"
        )
    ok = np.isfinite(bp).all(axis=1) & np.isfinite(rp).all(axis=1)
    flux = np.full((bp.shape[0], design["bp"].shape[0]), np.nan)
    flux[ok] = bp[ok] @ design["bp"].T + rp[ok] @ design["rp"].T
    return flux


def _photometry(
    truth: dict[str, np.ndarray],
    params: dict,
    distance_pc: np.ndarray | None = None,
    a_v: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Apparent G/BP/RP (composite for binaries), the observed SED (n, n_sed) and the RVS-band
    luminosity ratio of the secondary."""
    d = np.asarray(truth["distance_pc"] if distance_pc is None else distance_pc, np.float64)
    av = np.asarray(truth["a_v"] if a_v is None else a_v, np.float64)
    sed = _sed_photons_10pc(
        truth["teff"], truth["logg"], truth["m_h"], truth["alpha_m"], truth["mass"], av, params
    )
    lum_ratio = np.zeros(d.size)
    is_bin = np.asarray(truth.get("is_binary", np.zeros(d.size, bool)), bool)
    if np.any(is_bin):
        b = np.flatnonzero(is_bin)
        sed2 = _sed_photons_10pc(
            truth["teff2"][b],
            truth["logg2"][b],
            truth["m_h"][b],
            truth["alpha_m"][b],
            truth["mass2"][b],
            av[b],
            params,
        )
        lam = _sed_grid()
        rvs = (lam >= 846.0) & (lam <= 870.0)
        lum_ratio[b] = sed2[:, rvs].sum(1) / sed[b][:, rvs].sum(1)
        sed[b] += sed2
    sed *= (10.0 / d[:, None]) ** 2
    mags = _band_mags_10pc(sed, params)
    return {"sed": sed, "g": mags["g"], "bp": mags["bp"], "rp": mags["rp"], "lum_ratio": lum_ratio}


def _grvs(g_bp: np.ndarray, g_rp: np.ndarray, params: dict) -> np.ndarray:
    a, b = params["photometry"]["grvs_colour_terms"]
    return g_rp + a + b * (g_bp - g_rp)


# ==========================================================================================
# public deterministic model
# ==========================================================================================
def _single_labels(truth: dict[str, np.ndarray], secondary: bool = False) -> dict[str, np.ndarray]:
    n = np.asarray(truth["teff"]).size
    vsini = np.asarray(truth.get("vsini_kms", np.full(n, 3.0)), dtype=np.float64)
    if not secondary:
        return {
            "teff": truth["teff"],
            "logg": truth["logg"],
            "m_h": truth["m_h"],
            "alpha_m": truth["alpha_m"],
            "fe_h": truth["fe_h"],
            "mass": truth["mass"],
            "vsini_kms": vsini,
        }
    return {
        "teff": truth["teff2"],
        "logg": truth["logg2"],
        "m_h": truth["m_h"],
        "alpha_m": truth["alpha_m"],
        "fe_h": truth["fe_h"],
        "mass": truth["mass2"],
        "vsini_kms": vsini,
    }


def _spectrum(
    truth: dict[str, np.ndarray], params: dict, lum_ratio: np.ndarray | None = None
) -> np.ndarray:
    n = np.asarray(truth["teff"]).size
    rv = np.asarray(truth.get("rv_shift_kms", np.zeros(n)), dtype=np.float64)
    flux = _rvs_flux(_single_labels(truth), rv, params)
    is_bin = np.asarray(truth.get("is_binary", np.zeros(n, bool)), bool)
    if np.any(is_bin):
        b = np.flatnonzero(is_bin)
        if lum_ratio is None:
            lum_ratio = _photometry(truth, params)["lum_ratio"]
        sub = {k: np.asarray(v)[b] for k, v in truth.items() if np.ndim(v) == 1}
        f2 = _rvs_flux(_single_labels(sub, secondary=True), rv[b] + sub["rv2_kms"], params)
        r = lum_ratio[b][:, None]
        flux[b] = (flux[b] + r * f2) / (1.0 + r)
    return np.maximum(flux, MIN_FLUX)


def noise_free_observables(
    truth: dict[str, np.ndarray], params: dict = DEFAULT_PARAMS
) -> dict[str, np.ndarray]:
    """Deterministic forward model of one set of stars.

    Args:
        truth: per-star arrays (n,) -- teff, logg, m_h, alpha_m, fe_h, mass, distance_pc,
            a_v, rv_shift_kms, optionally vsini_kms (default 3 km/s) and, for binaries,
            is_binary, teff2, logg2, mass2, rv2_kms.
    Returns:
        flux (n, 2401) float64 normalised RVS flux without noise or NaN; bp, rp (n, 55) XP
        coefficients [e-/s-like]; g, bp_mag, rp_mag, grvs [mag]; parallax_mas (n,) including
        the DR3 zero point (-0.017 mas); lum_ratio (n,) RVS-band flux ratio secondary/primary;
        bp_counts, rp_counts (n, m) the band spectra [e-/s per SED bin] that were projected.
    """
    params = _with_defaults(params)
    phot = _photometry(truth, params)
    flux = _spectrum(truth, params, phot["lum_ratio"])
    mags = {"g": phot["g"], "bp": phot["bp"], "rp": phot["rp"]}
    xp = _xp_coefficients(phot["sed"], mags, params)
    return {
        "flux": flux,
        "bp": xp["bp"],
        "rp": xp["rp"],
        "bp_counts": xp["bp_counts"],
        "rp_counts": xp["rp_counts"],
        "g": phot["g"],
        "bp_mag": phot["bp"],
        "rp_mag": phot["rp"],
        "grvs": _grvs(phot["bp"], phot["rp"], params),
        "parallax_mas": 1000.0 / np.asarray(truth["distance_pc"], np.float64)
        + PARALLAX_ZERO_POINT_MAS,
        "lum_ratio": phot["lum_ratio"],
    }


# ==========================================================================================
# noise models
# ==========================================================================================
def _median_snr(grvs: np.ndarray, params: dict) -> np.ndarray:
    """Median rvs_spec_sig_to_noise vs G_RVS: photon + background law (n,)."""
    s = params["snr"]
    f = 10.0 ** (-0.4 * (np.asarray(grvs) - s["grvs_ref"]))
    b = s["background_ratio"]
    return s["snr_at_ref"] * f / np.sqrt((f + b) / (1.0 + b))


def _grvs_detection_limit(params: dict) -> float:
    """Faintest G_RVS at which the S/N floor is reachable (+TRANSIT_SIGMAS scatter)."""
    grid = np.linspace(2.0, 20.0, 3601)
    boost = math.exp(TRANSIT_SIGMAS_FOR_LIMIT * params["snr"]["transit_lnsigma"])
    boost *= params["observed_shift"]["snr_factor"]
    ok = _median_snr(grid, params) * boost >= params["snr_floor"]
    return float(grid[ok].max())


def _flux_over_error(mag: np.ndarray, band: str, params: dict) -> np.ndarray:
    ph = params["photometry"]
    rate = 10.0 ** (0.4 * (params["sed"]["electron_zero_point"][band] - mag))
    t = ph["exposure_s"][band]
    rel2 = (
        ph["relative_floor"][band] ** 2
        + 1.0 / (rate * t)
        + ph["background_e_per_s"][band] / (rate**2 * t)
    )
    return 1.0 / np.sqrt(rel2)


def _nan_edges(rng: np.random.Generator, n: int, params: dict) -> tuple[np.ndarray, np.ndarray]:
    ne = params["spectrum"]["nan_edges"]
    lead = np.where(rng.random(n) < ne["p_zero"], 0, rng.integers(1, ne["max_pixels"] + 1, n))
    trail = np.where(rng.random(n) < ne["p_zero"], 0, rng.integers(1, ne["max_pixels"] + 1, n))
    return lead, trail


def _observe(
    rng: np.random.Generator,
    truth: dict[str, np.ndarray],
    model: dict[str, np.ndarray],
    snr: np.ndarray,
    transit_factor: np.ndarray,
    params: dict,
) -> dict[str, np.ndarray]:
    """Add noise to the noise-free model; returns the ``observed`` dict (float32)."""
    n = snr.size
    flux_true = model["flux"]
    sigma = np.sqrt(flux_true) / snr[:, None]
    flux = flux_true + sigma * rng.standard_normal(flux_true.shape)
    lead, trail = _nan_edges(rng, n, params)
    pix = np.arange(RVS_N_PIXELS)[None, :]
    bad = (pix < lead[:, None]) | (pix >= RVS_N_PIXELS - trail[:, None])
    flux[bad] = np.nan
    sigma = np.where(bad, np.nan, sigma)

    ph = params["photometry"]
    out: dict[str, np.ndarray] = {
        "flux": flux.astype(np.float32),
        "flux_error": sigma.astype(np.float32),
        "snr": snr.astype(np.float32),
    }
    for band in ("bp", "rp"):
        _, basis = xp_basis(band)
        var = (model[band + "_counts"] @ basis**2 + ph["xp_background_e_per_s"]) / (
            ph["xp_exposure_s"] * transit_factor[:, None]
        )
        err = np.sqrt(var)
        out[band + "_coefficients"] = (model[band] + err * rng.standard_normal(err.shape)).astype(
            np.float32
        )
        out[band + "_coefficient_errors"] = err.astype(np.float32)
    for band, key in (("g", "g"), ("bp", "bp_mag"), ("rp", "rp_mag")):
        foe = _flux_over_error(model[key], band, params) * np.sqrt(transit_factor)
        mag = model[key] + MAG_PER_NATS / foe * rng.standard_normal(n)
        out[f"phot_{band}_mean_mag"] = mag.astype(np.float32)
        out[f"phot_{band}_mean_flux_over_error"] = foe.astype(np.float32)
    ast = params["astrometry"]
    is_bin = np.asarray(truth["is_binary"], bool)
    ruwe = np.exp(ast["ruwe_lnsigma"] * rng.standard_normal(n))
    lo, hi = params["population"]["binaries"]["ruwe_limits"]
    ruwe_bin = np.exp(rng.uniform(math.log(lo), math.log(hi), n))
    ruwe = np.where(is_bin, ruwe_bin, ruwe)
    a, b = ast["parallax_sigma_mas"]
    plx_err = (a + b * 10.0 ** (0.2 * (model["g"] - 15.0))) / np.sqrt(transit_factor)
    plx_err = plx_err * np.where(is_bin, ruwe, 1.0)
    plx_err = plx_err * params["observed_shift"]["parallax_error_factor"]
    out["parallax"] = (model["parallax_mas"] + plx_err * rng.standard_normal(n)).astype(np.float32)
    out["parallax_error"] = plx_err.astype(np.float32)
    out["ruwe"] = ruwe.astype(np.float32)
    return out


# ==========================================================================================
# population
# ==========================================================================================
def _ms_relations() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Main-sequence Teff [K], log g, mass [Msun] nodes (solar metallicity)."""
    teff = np.array([3200.0, 3400.0, 3700.0, 4300.0, 5000.0, 5772.0, 6300.0, 6800.0, 7300.0])
    logg = np.array([5.05, 4.95, 4.80, 4.65, 4.58, 4.44, 4.30, 4.15, 4.10])
    mass = np.array([0.20, 0.35, 0.50, 0.68, 0.80, 1.00, 1.15, 1.35, 1.60])
    return teff, logg, mass


def _alpha_of_m_h(pop: str, m_h: np.ndarray, params: dict) -> np.ndarray:
    """Mean [α/M] vs [M/H] of a population (no scatter)."""
    pp = params["population"]
    if pop == "thick_disc":
        p = pp["thick_disc"]
        above = np.clip(m_h - p["alpha_knee_m_h"], 0.0, None)
        return p["alpha_plateau"] + p["alpha_slope_above_knee"] * above
    if pop == "halo":
        return np.full_like(m_h, pp["halo"]["alpha_mean"])
    p = pp["thin_disc"]
    return p["alpha_at_solar"] + p["alpha_slope"] * np.clip(m_h, -1.0, 0.5)


def _draw_labels(
    rng: np.random.Generator, pop: str, stage: str, m: int, params: dict
) -> dict[str, np.ndarray]:
    """Draw ``m`` stars' labels (at R = R0; the gradient is applied after positions)."""
    pp = params["population"]
    mh_lo, mh_hi = pp["m_h_limits"]
    ms_t, ms_g, ms_m = _ms_relations()
    base = "thin_disc" if pop in OOD_POPULATIONS else pop
    # metallicity and alpha
    if base == "halo":
        p = pp["halo"]
        m_h = np.clip(
            p["m_h_mean"] + p["m_h_sigma"] * rng.standard_normal(m), p["m_h_min"], p["m_h_max"]
        )
        a_sig = p["alpha_sigma"]
    else:
        p = pp[base]
        m_h = np.clip(p["m_h_mean"] + p["m_h_sigma"] * rng.standard_normal(m), mh_lo, mh_hi)
        a_sig = p["alpha_sigma"]
    alpha_dev = a_sig * rng.standard_normal(m)
    fe_dev = pp["fe_h_scatter"] * rng.standard_normal(m)
    vsini = pp["vsini_median_kms"] * np.exp(pp["vsini_lnsigma"] * rng.standard_normal(m))
    mass_med = pp[base]["giant_mass_median"]
    mass_sig = pp[base]["giant_mass_lnsigma"]
    teff_dm = 0.0  # dTeff/d[M/H] used when the gradient shifts [M/H]
    if stage == "main_sequence":
        if pop == "cool_dwarf":
            lo, hi = pp["cool_dwarf"]["teff_limits"]
            teff = rng.uniform(lo, hi, m)
            glo, ghi = pp["cool_dwarf"]["logg_limits"]
            logg = np.clip(np.interp(teff, ms_t, ms_g) + 0.05 * rng.standard_normal(m), glo, ghi)
        elif pop == "binary":
            lo, hi = pp["binary"]["primary_teff_limits"]
            teff = rng.uniform(lo, hi, m)
            logg = np.interp(teff, ms_t, ms_g) + pp["dwarf_logg_sigma"] * rng.standard_normal(m)
        else:
            lo, hi = pp["dwarf_teff_limits"]
            teff = np.clip(
                pp["dwarf_teff_mean"] + pp["dwarf_teff_sigma"] * rng.standard_normal(m), lo, hi
            )
            logg = np.interp(teff, ms_t, ms_g) + pp["dwarf_logg_sigma"] * rng.standard_normal(m)
            logg = np.maximum(logg, 4.0)
        mass = np.interp(teff, ms_t, ms_m) * (1.0 + 0.1 * m_h)
    elif stage == "subgiant":
        glo, ghi = pp["subgiant_logg_limits"]
        logg = rng.uniform(glo, ghi, m)
        teff = np.clip(
            6000.0 - 700.0 * (ghi - logg) / (ghi - glo) + 250.0 * rng.standard_normal(m),
            4900.0,
            6500.0,
        )
        mass = rng.uniform(0.95, 1.5, m)
    elif stage == "red_giant_branch":
        glo, ghi = pp["rgb_logg_limits"]
        logg = rng.uniform(glo, ghi, m)
        teff_dm = pp["rgb_teff_per_m_h"]
        teff = (
            pp["rgb_teff_at_logg25"]
            + pp["rgb_teff_per_logg"] * (logg - 2.5)
            + teff_dm * m_h
            + pp["rgb_teff_sigma"] * rng.standard_normal(m)
        )
        mass = mass_med * np.exp(mass_sig * rng.standard_normal(m))
    elif stage == "red_clump":
        logg = pp["rc_logg_mean"] + pp["rc_logg_sigma"] * rng.standard_normal(m)
        teff_dm = pp["rc_teff_per_m_h"]
        teff = pp["rc_teff_mean"] + teff_dm * m_h + pp["rc_teff_sigma"] * rng.standard_normal(m)
        mass = mass_med * np.exp(mass_sig * rng.standard_normal(m))
    elif stage == "m_giant":
        lo, hi = pp["m_giant"]["teff_limits"]
        teff = rng.uniform(lo, hi, m)
        glo, ghi = pp["m_giant"]["logg_limits"]
        logg = np.clip(
            glo + (ghi - glo) * (teff - lo) / (hi - lo) + 0.1 * rng.standard_normal(m), glo, ghi
        )
        mass = 1.2 * np.exp(0.3 * rng.standard_normal(m))
    elif stage == "hot_main_sequence":
        p = pp["ob_star"]
        lo, hi = p["teff_limits"]
        teff = np.exp(rng.uniform(math.log(lo), math.log(hi), m))
        glo, ghi = p["logg_limits"]
        logg = rng.uniform(glo, ghi, m)
        mass = 2.5 * (teff / 10000.0) ** 2.0
        m_h = np.clip(0.1 * rng.standard_normal(m), mh_lo, mh_hi)
        vsini = np.minimum(
            p["vsini_median_kms"] * np.exp(p["vsini_lnsigma"] * rng.standard_normal(m)), 400.0
        )
    else:  # pragma: no cover
        raise ValueError(stage)
    alpha_m = _alpha_of_m_h(base, m_h, params) + alpha_dev
    if pop == "ob_star":
        alpha_m = alpha_dev * 0.5
    labels = {
        "teff": teff,
        "logg": logg,
        "m_h": m_h,
        "alpha_m": alpha_m,
        "fe_h": m_h + fe_dev,
        "mass": mass,
        "vsini_kms": vsini,
        "_teff_dm": np.full(m, teff_dm),
    }
    # binaries
    is_bin = np.zeros(m, bool)
    if pop == "binary":
        is_bin[:] = True
        q_lo, q_hi = pp["binary"]["mass_ratio_limits"]
    else:
        q_lo, q_hi = pp["binaries"]["mass_ratio_limits"]
        if pop in ("thin_disc", "thick_disc", "halo") and stage == "main_sequence":
            is_bin = rng.random(m) < pp["binary_fraction_of_dwarfs"]
    q = rng.uniform(q_lo, q_hi, m)
    mass2 = np.where(is_bin, q * mass, np.nan)
    labels["is_binary"] = is_bin
    labels["mass2"] = mass2
    labels["teff2"] = np.where(is_bin, np.interp(mass2, ms_m, ms_t), np.nan)
    labels["logg2"] = np.where(is_bin, np.interp(mass2, ms_m, ms_g), np.nan)
    v_lo, v_hi = pp["binaries"]["relative_rv_kms"]
    rv2 = rng.uniform(v_lo, v_hi, m) * np.where(rng.random(m) < 0.5, -1.0, 1.0)
    labels["rv2_kms"] = np.where(is_bin, rv2, 0.0)
    return labels


def _density(pop: str, r_kpc: np.ndarray, z_kpc: np.ndarray, params: dict) -> np.ndarray:
    """Relative number density of a component (1 at the Sun for the discs)."""
    gal = params["galaxy"]
    if pop == "halo":
        h = gal["halo"]
        rq2 = r_kpc**2 + (z_kpc / h["flattening_q"]) ** 2
        rc2 = h["core_radius_kpc"] ** 2
        return ((rq2 + rc2) / (R0_KPC**2 + rc2)) ** (-0.5 * h["power_law_index"])
    comp = "thick_disc" if pop == "thick_disc" else "thin_disc"
    h_r = gal[comp]["scale_length_kpc"]
    h_z = gal[comp]["scale_height_kpc"]
    if pop == "ob_star":
        h_z = params["population"]["ob_star"]["scale_height_kpc"]
    return np.exp(-(r_kpc - R0_KPC) / h_r - np.abs(z_kpc) / h_z)


def _dust_a_v(d_pc: np.ndarray, sinb: np.ndarray, params: dict) -> np.ndarray:
    """Mean A_V [mag] to distance d along latitude b: exponential dust layer."""
    du = params["galaxy"]["dust"]
    d_kpc = d_pc / 1000.0
    x = d_kpc * np.abs(sinb) / du["scale_height_kpc"]
    frac = np.where(x > 1e-8, -np.expm1(-x) / np.maximum(x, 1e-8), 1.0)
    return du["a_v_per_kpc"] * d_kpc * frac


def _sample_positions(
    rng: np.random.Generator, pop: str, m_rvs_abs: np.ndarray, d_cap: float | None, params: dict
) -> dict[str, np.ndarray]:
    """Heliocentric positions drawn from density x d^2 x visibility (G_RVS limit).

    For each star N_DIRECTIONS isotropic lines of sight are proposed; each is weighted by
    the integral of d^2 rho(R, z) over the distances where the star is visible (its G_RVS,
    incl. mean extinction, between the bright limit and the S/N-floor detection limit); one
    direction is chosen by that weight and a distance drawn from its N_DISTANCE_CELLS-cell
    profile (importance resampling).
    """
    gal = params["galaxy"]
    g_lim = _grvs_detection_limit(params)
    a_rvs = gal["dust"]["a_rvs_per_a_v"]
    sel_slope = params["snr"]["candidate_selection_slope"]
    grvs_ref = params["snr"]["grvs_ref"]
    shift = params["observed_shift"]
    f_d, f_av = shift["distance_factor"], shift["a_v_factor"]
    n = m_rvs_abs.size
    out = {k: np.empty(n) for k in ("distance_pc", "l_deg", "b_deg", "a_v_mean")}
    for c0 in range(0, n, POSITION_CHUNK):
        sl = slice(c0, min(n, c0 + POSITION_CHUNK))
        mabs = m_rvs_abs[sl]
        k = mabs.size
        d_max = np.minimum(10.0 ** ((g_lim - mabs + 5.0) / 5.0), MAX_DISTANCE_PC)
        if d_cap is not None:
            d_max = np.minimum(d_max, d_cap)
        sinb = rng.uniform(-1.0, 1.0, (k, N_DIRECTIONS))
        lon = rng.uniform(0.0, 2.0 * np.pi, (k, N_DIRECTIONS))
        cosb = np.sqrt(1.0 - sinb**2)
        frac = (np.arange(N_DISTANCE_CELLS) + 0.5) / N_DISTANCE_CELLS
        d = d_max[:, None, None] * frac[None, None, :]  # (k, 1, J)
        dk = d / 1000.0
        xg = -R0_KPC + dk * (cosb * np.cos(lon))[:, :, None]
        yg = dk * (cosb * np.sin(lon))[:, :, None]
        zg = Z_SUN_KPC + dk * sinb[:, :, None]
        rho = _density(pop, np.hypot(xg, yg), zg, params)
        av = _dust_a_v(d, sinb[:, :, None], params)
        # G_RVS as the S/N law sees it: at f_d x d, through a survey that reaches f_d times
        # farther at the same S/N (so 5 log10 f_d cancels)
        mag = mabs[:, None, None] + 5.0 * np.log10(d / 10.0) + a_rvs * f_av * av
        vis = (mag < g_lim) & (mag > gal["bright_limit_grvs"])
        w = d**2 * rho * vis * 10.0 ** (-sel_slope * (mag - grvs_ref))
        wdir = w.sum(axis=2)
        cum = np.cumsum(wdir, axis=1)
        u = rng.random(k) * cum[:, -1]
        kk = np.minimum((cum < u[:, None]).sum(axis=1), N_DIRECTIONS - 1)
        rows = np.arange(k)
        wsel = w[rows, kk]
        cumd = np.cumsum(wsel, axis=1)
        ud = rng.random(k) * cumd[:, -1]
        jj = np.minimum((cumd < ud[:, None]).sum(axis=1), N_DISTANCE_CELLS - 1)
        # uniform in volume (d^3) within the chosen cell
        cube = jj**3 + rng.random(k) * ((jj + 1.0) ** 3 - jj**3)
        dist = d_max * np.cbrt(cube) / N_DISTANCE_CELLS
        sb = sinb[rows, kk]
        dist = np.maximum(dist, 1.0)
        out["distance_pc"][sl] = f_d * dist
        out["b_deg"][sl] = np.degrees(np.arcsin(sb))
        out["l_deg"][sl] = np.degrees(lon[rows, kk])
        out["a_v_mean"][sl] = f_av * _dust_a_v(dist, sb, params)
    return out


def _galactocentric(
    distance_pc: np.ndarray, l_deg: np.ndarray, b_deg: np.ndarray
) -> dict[str, np.ndarray]:
    dk = distance_pc / 1000.0
    lr, br = np.radians(l_deg), np.radians(b_deg)
    x = -R0_KPC + dk * np.cos(br) * np.cos(lr)
    y = dk * np.cos(br) * np.sin(lr)
    z = Z_SUN_KPC + dk * np.sin(br)
    return {"x_kpc": x, "y_kpc": y, "z_kpc": z, "R_kpc": np.hypot(x, y)}


def _group_quotas(n: int, params: dict) -> list[tuple[str, str, int]]:
    """Exact (population, stage, count) quotas (largest remainder) summing to n."""
    pp = params["population"]
    fr = pp["fractions"]
    g = pp["giant_fraction"]
    rc = pp["red_clump_fraction_of_giants"]
    sg = pp["subgiant_fraction_of_dwarfs"]
    groups: list[tuple[str, str, float]] = []
    for pop in ("thin_disc", "thick_disc", "halo"):
        rcf = 0.0 if pop == "halo" else rc
        groups += [
            (pop, "main_sequence", fr[pop] * (1 - g) * (1 - sg)),
            (pop, "subgiant", fr[pop] * (1 - g) * sg),
            (pop, "red_giant_branch", fr[pop] * g * (1 - rcf)),
            (pop, "red_clump", fr[pop] * g * rcf),
        ]
    groups += [
        ("ob_star", "hot_main_sequence", fr["ob_star"]),
        ("m_giant", "m_giant", fr["m_giant"]),
        ("cool_dwarf", "main_sequence", fr["cool_dwarf"]),
        ("binary", "main_sequence", fr["binary"]),
    ]
    total = sum(f for _, _, f in groups)
    exact = np.array([f / total * n for _, _, f in groups])
    counts = np.floor(exact).astype(int)
    rest = n - counts.sum()
    order = np.argsort(-(exact - counts), kind="stable")
    counts[order[:rest]] += 1
    return [(p, s, int(c)) for (p, s, _), c in zip(groups, counts, strict=True)]


def _candidates(
    rng: np.random.Generator, pop: str, stage: str, m: int, params: dict
) -> dict[str, np.ndarray]:
    """Draw m candidate stars of one group with positions, photometry and S/N."""
    pp = params["population"]
    lab = _draw_labels(rng, pop, stage, m, params)
    # absolute G_RVS without extinction (visibility limit for the position draw)
    sed = _sed_photons_10pc(
        lab["teff"], lab["logg"], lab["m_h"], lab["alpha_m"], lab["mass"], None, params
    )
    mags = _band_mags_10pc(sed, params)
    m_rvs = _grvs(mags["bp"], mags["rp"], params)
    d_cap = pp["cool_dwarf"]["max_distance_pc"] if pop == "cool_dwarf" else None
    pos = _sample_positions(rng, pop, m_rvs, d_cap, params)
    gc = _galactocentric(pos["distance_pc"], pos["l_deg"], pos["b_deg"])
    base = "thin_disc" if pop in OOD_POPULATIONS else pop
    grad = pp[base].get("m_h_gradient_dex_per_kpc", 0.0) if base != "halo" else 0.0
    if grad != 0.0 and pop != "ob_star":
        mh_lo, mh_hi = pp["m_h_limits"]
        new = np.clip(lab["m_h"] + grad * (gc["R_kpc"] - R0_KPC), mh_lo, mh_hi)
        shift = new - lab["m_h"]
        lab["alpha_m"] = (
            lab["alpha_m"]
            + _alpha_of_m_h(base, new, params)
            - _alpha_of_m_h(base, lab["m_h"], params)
        )
        lab["m_h"] = new
        lab["fe_h"] = lab["fe_h"] + shift
        lab["teff"] = lab["teff"] + lab["_teff_dm"] * shift
    dust = params["galaxy"]["dust"]
    a_v = pos["a_v_mean"] * np.exp(dust["lnsigma"] * rng.standard_normal(m))
    rv = params["spectrum"]["rv_shift_sigma_kms"] * rng.standard_normal(m)
    truth = {k: v for k, v in lab.items() if not k.startswith("_")}
    truth.update(
        distance_pc=pos["distance_pc"],
        l_deg=pos["l_deg"],
        b_deg=pos["b_deg"],
        a_v=a_v,
        rv_shift_kms=rv,
        **gc,
    )
    truth["population"] = np.full(m, POPULATION_CODES[pop], np.int8)
    truth["stage"] = np.full(m, STAGE_CODES[stage], np.int8)
    phot = _photometry(truth, params)
    grvs = _grvs(phot["bp"], phot["rp"], params)
    transit = np.exp(2.0 * params["snr"]["transit_lnsigma"] * rng.standard_normal(m))
    field = params["observed_shift"]
    # the shifted field's survey reaches distance_factor times farther at the same S/N
    deeper = 5.0 * math.log10(field["distance_factor"])
    snr = _median_snr(grvs - deeper, params) * np.sqrt(transit) * field["snr_factor"]
    truth["lum_ratio"] = phot["lum_ratio"]
    truth["_snr"] = snr
    truth["_transit"] = transit
    truth["_keep"] = (
        (snr >= params["snr_floor"])
        & np.isfinite(snr)
        & (grvs > params["galaxy"]["bright_limit_grvs"])
    )
    return truth


def simulate_stars(
    rng: np.random.Generator, n: int, params: dict = DEFAULT_PARAMS
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Draw n stars that pass the survey's S/N floor, returning (truth, observed).

    Each (population, stage) group gets an exact quota of n (``params["population"]``);
    candidates are drawn in batches until every quota is filled with stars whose
    rvs_spec_sig_to_noise >= params["snr_floor"]; the result is shuffled.

    truth (all (n,)): teff [K], logg, m_h, alpha_m, fe_h [dex], mass [Msun], vsini_kms,
        distance_pc, a_v [mag], rv_shift_kms, l_deg, b_deg, x_kpc, y_kpc, z_kpc, R_kpc
        (galactocentric, Sun at x = -8.2 kpc), population (int8, POPULATION_CODES),
        stage (int8, STAGE_CODES), is_binary (bool), mass2, teff2, logg2 (NaN for single
        stars), rv2_kms (secondary - primary, 0 for singles), lum_ratio (RVS-band flux
        ratio, 0 for singles), n_enh (dredge-up [N/M]).
    observed: flux, flux_error (n, 2401) float32 (NaN at the edges); snr; bp/rp
        _coefficients and _coefficient_errors (n, 55); phot_{g,bp,rp}_mean_mag and
        _flux_over_error; parallax, parallax_error [mas]; ruwe; all float32.
    """
    if n < 1:
        raise ValueError("n must be >= 1")
    params = _with_defaults(params)
    parts: list[dict[str, np.ndarray]] = []
    for pop, stage, quota in _group_quotas(n, params):
        need = quota
        acc_rate = 0.3
        while need > 0:
            m = int(min(MAX_CANDIDATE_BATCH, max(64, math.ceil(1.3 * need / max(acc_rate, 0.01)))))
            cand = _candidates(rng, pop, stage, m, params)
            keep = np.flatnonzero(cand["_keep"])
            acc_rate = max(keep.size / m, 0.005)
            keep = keep[:need]
            parts.append({k: v[keep] for k, v in cand.items()})
            need -= keep.size
    truth = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    order = rng.permutation(n)
    truth = {k: v[order] for k, v in truth.items()}
    snr = truth.pop("_snr")
    transit = truth.pop("_transit")
    truth.pop("_keep")
    truth["n_enh"] = _nitrogen_enhancement(truth["logg"], truth["mass"], params)
    model = noise_free_observables(truth, params)
    observed = _observe(rng, truth, model, snr, transit, params)
    return truth, observed


def radial_velocity_error(
    rng: np.random.Generator,
    teff: np.ndarray,
    snr: np.ndarray,
    params: dict = DEFAULT_PARAMS,
) -> np.ndarray:
    """A Gaia DR3-like ``radial_velocity_error`` [km/s] per star (n,) float32 from its
    T_eff [K] and rvs_spec_sig_to_noise ``snr``, with ``params["rv_error"]``'s law
    (:data:`DEFAULT_PARAMS`: Katz et al. 2023): it grows as 1/S/N, faster for stars hotter
    than ``hot_teff``, with a lognormal scatter drawn from ``rng`` (one standard normal per
    star, nothing else drawn), added in quadrature to a 0.11 km/s floor."""
    law = _with_defaults(params)["rv_error"]
    teff = np.asarray(teff, dtype=np.float64)
    snr = np.clip(np.asarray(snr, dtype=np.float64), 1e-3, None)
    hot = np.where(teff > law["hot_teff"], (teff / law["hot_teff"]) ** law["hot_power"], 1.0)
    scatter = np.exp(law["lnsigma"] * rng.standard_normal(teff.shape))
    photon = law["at_snr_ref_kms"] * law["snr_ref"] / snr * hot * scatter
    return np.hypot(law["floor_kms"], photon).astype(np.float32)


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
