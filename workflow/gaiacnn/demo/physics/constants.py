"""Label names, population and stage codes and the named constants of the model."""

from __future__ import annotations

import math

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
