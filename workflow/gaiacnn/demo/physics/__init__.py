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

Modules of this package:

* :mod:`~gaiacnn.demo.physics.constants`:
  Label names, population and stage codes and the named constants of the model.
* :mod:`~gaiacnn.demo.physics.linelist`:
  The line list (:data:`LINE_TABLE`), Paschen lines and TiO bands.
* :mod:`~gaiacnn.demo.physics.params`:
  The tunable parameters (:data:`DEFAULT_PARAMS`) and small shared helpers.
* :mod:`~gaiacnn.demo.physics.rvs`:
  RVS spectra: line strengths, profiles (LSF, Doppler, damping) and the flux.
* :mod:`~gaiacnn.demo.physics.xp`:
  SED, passbands, photometry and the XP coefficients and sampled spectra.
* :mod:`~gaiacnn.demo.physics.observe`:
  The noise-free observables of a star and the noise models (S/N, errors).
* :mod:`~gaiacnn.demo.physics.population`:
  Populations, Galactic positions and :func:`simulate_stars`.
* :mod:`~gaiacnn.demo.physics.crlb`:
  Cramér–Rao bounds on the labels (:func:`cramer_rao_bound`).
"""

from __future__ import annotations

from gaiacnn.demo.physics.constants import AMU as AMU
from gaiacnn.demo.physics.constants import AU_PER_10PC as AU_PER_10PC
from gaiacnn.demo.physics.constants import BALMER_EDGE_NM as BALMER_EDGE_NM
from gaiacnn.demo.physics.constants import BALMER_EDGE_WIDTH_NM as BALMER_EDGE_WIDTH_NM
from gaiacnn.demo.physics.constants import BROAD_VSINI_KMS as BROAD_VSINI_KMS
from gaiacnn.demo.physics.constants import C2_NM_K as C2_NM_K
from gaiacnn.demo.physics.constants import C_KMS as C_KMS
from gaiacnn.demo.physics.constants import C_M_S as C_M_S
from gaiacnn.demo.physics.constants import CN_DISSOCIATION_COEFF as CN_DISSOCIATION_COEFF
from gaiacnn.demo.physics.constants import CORE_WINDOW_SIGMAS as CORE_WINDOW_SIGMAS
from gaiacnn.demo.physics.constants import CRLB_CHUNK as CRLB_CHUNK
from gaiacnn.demo.physics.constants import CRLB_EIG_RTOL as CRLB_EIG_RTOL
from gaiacnn.demo.physics.constants import CRLB_NUISANCE_PRIOR_SIGMA as CRLB_NUISANCE_PRIOR_SIGMA
from gaiacnn.demo.physics.constants import CRLB_STEPS as CRLB_STEPS
from gaiacnn.demo.physics.constants import CRLB_UNCONSTRAINED as CRLB_UNCONSTRAINED
from gaiacnn.demo.physics.constants import DAMPING_GAMMA_NM as DAMPING_GAMMA_NM
from gaiacnn.demo.physics.constants import DAMPING_GRAVITY_COEFF as DAMPING_GRAVITY_COEFF
from gaiacnn.demo.physics.constants import EXTINCTION_NATS_PER_MAG as EXTINCTION_NATS_PER_MAG
from gaiacnn.demo.physics.constants import EXTINCTION_REF_NM as EXTINCTION_REF_NM
from gaiacnn.demo.physics.constants import EXTINCTION_SLOPE as EXTINCTION_SLOPE
from gaiacnn.demo.physics.constants import GAIA_PUPIL_AREA_M2 as GAIA_PUPIL_AREA_M2
from gaiacnn.demo.physics.constants import GIANT_STAGES as GIANT_STAGES
from gaiacnn.demo.physics.constants import H_MINUS_EV as H_MINUS_EV
from gaiacnn.demo.physics.constants import H_N3_EV as H_N3_EV
from gaiacnn.demo.physics.constants import HOT_CONTINUUM_TEFF as HOT_CONTINUUM_TEFF
from gaiacnn.demo.physics.constants import ION_GRAVITY_COEFF as ION_GRAVITY_COEFF
from gaiacnn.demo.physics.constants import K_B as K_B
from gaiacnn.demo.physics.constants import LABELS, OOD_POPULATIONS, POPULATION_CODES, STAGE_CODES
from gaiacnn.demo.physics.constants import LINE_DEPTH_MAX as LINE_DEPTH_MAX
from gaiacnn.demo.physics.constants import LOG_ETA_CLIP as LOG_ETA_CLIP
from gaiacnn.demo.physics.constants import LOGG_SUN as LOGG_SUN
from gaiacnn.demo.physics.constants import MAG_PER_NATS as MAG_PER_NATS
from gaiacnn.demo.physics.constants import MAX_CANDIDATE_BATCH as MAX_CANDIDATE_BATCH
from gaiacnn.demo.physics.constants import MAX_DISTANCE_PC as MAX_DISTANCE_PC
from gaiacnn.demo.physics.constants import MIN_FLUX as MIN_FLUX
from gaiacnn.demo.physics.constants import MIN_WINDOW_NM as MIN_WINDOW_NM
from gaiacnn.demo.physics.constants import MOLECULE_DEPTH_MAX as MOLECULE_DEPTH_MAX
from gaiacnn.demo.physics.constants import N_DIRECTIONS as N_DIRECTIONS
from gaiacnn.demo.physics.constants import N_DISTANCE_CELLS as N_DISTANCE_CELLS
from gaiacnn.demo.physics.constants import NEGLIGIBLE_ETA as NEGLIGIBLE_ETA
from gaiacnn.demo.physics.constants import PARALLAX_ZERO_POINT_MAS as PARALLAX_ZERO_POINT_MAS
from gaiacnn.demo.physics.constants import PASCHEN_GAMMA_LOGG_COEFF as PASCHEN_GAMMA_LOGG_COEFF
from gaiacnn.demo.physics.constants import PASCHEN_GAMMA_NM as PASCHEN_GAMMA_NM
from gaiacnn.demo.physics.constants import PASCHEN_STARK_SIGMA_NM as PASCHEN_STARK_SIGMA_NM
from gaiacnn.demo.physics.constants import PASCHEN_WINDOW_NM as PASCHEN_WINDOW_NM
from gaiacnn.demo.physics.constants import PASSBAND_EDGE_WIDTH_NM as PASSBAND_EDGE_WIDTH_NM
from gaiacnn.demo.physics.constants import PASSBAND_LIMITS_NM as PASSBAND_LIMITS_NM
from gaiacnn.demo.physics.constants import PLANCK_H_J_S as PLANCK_H_J_S
from gaiacnn.demo.physics.constants import POSITION_CHUNK as POSITION_CHUNK
from gaiacnn.demo.physics.constants import R0_KPC as R0_KPC
from gaiacnn.demo.physics.constants import REF_LOGG as REF_LOGG
from gaiacnn.demo.physics.constants import REF_TEFF as REF_TEFF
from gaiacnn.demo.physics.constants import SED_GRID_MAX_NM as SED_GRID_MAX_NM
from gaiacnn.demo.physics.constants import SED_GRID_MIN_NM as SED_GRID_MIN_NM
from gaiacnn.demo.physics.constants import SED_GRID_STEP_NM as SED_GRID_STEP_NM
from gaiacnn.demo.physics.constants import SOLAR_FLUX_550NM_1AU as SOLAR_FLUX_550NM_1AU
from gaiacnn.demo.physics.constants import TEFF_SUN as TEFF_SUN
from gaiacnn.demo.physics.constants import THETA_NUM as THETA_NUM
from gaiacnn.demo.physics.constants import TIO_RIPPLE_AMPLITUDE as TIO_RIPPLE_AMPLITUDE
from gaiacnn.demo.physics.constants import TIO_RIPPLE_PERIOD_NM as TIO_RIPPLE_PERIOD_NM
from gaiacnn.demo.physics.constants import TRANSIT_SIGMAS_FOR_LIMIT as TRANSIT_SIGMAS_FOR_LIMIT
from gaiacnn.demo.physics.constants import XP_BAND_GRID_NM as XP_BAND_GRID_NM
from gaiacnn.demo.physics.constants import XP_HERMITE_HALF_RANGE as XP_HERMITE_HALF_RANGE
from gaiacnn.demo.physics.constants import XP_MERGE_NM as XP_MERGE_NM
from gaiacnn.demo.physics.constants import XP_SAMPLED_MAX_NM as XP_SAMPLED_MAX_NM
from gaiacnn.demo.physics.constants import XP_SAMPLED_MIN_NM as XP_SAMPLED_MIN_NM
from gaiacnn.demo.physics.constants import XP_SAMPLED_STEP_NM as XP_SAMPLED_STEP_NM
from gaiacnn.demo.physics.constants import XP_THROUGHPUT as XP_THROUGHPUT
from gaiacnn.demo.physics.constants import Z_SUN_KPC as Z_SUN_KPC
from gaiacnn.demo.physics.crlb import _error_vector as _error_vector
from gaiacnn.demo.physics.crlb import _model_vector as _model_vector
from gaiacnn.demo.physics.crlb import _perturb as _perturb
from gaiacnn.demo.physics.crlb import cramer_rao_bound
from gaiacnn.demo.physics.linelist import LINE_TABLE
from gaiacnn.demo.physics.linelist import PASCHEN_LINES as PASCHEN_LINES
from gaiacnn.demo.physics.linelist import TIO_BANDS as TIO_BANDS
from gaiacnn.demo.physics.linelist import TIO_SED_BANDS as TIO_SED_BANDS
from gaiacnn.demo.physics.observe import _flux_over_error as _flux_over_error
from gaiacnn.demo.physics.observe import _grvs_detection_limit as _grvs_detection_limit
from gaiacnn.demo.physics.observe import _median_snr as _median_snr
from gaiacnn.demo.physics.observe import _nan_edges as _nan_edges
from gaiacnn.demo.physics.observe import _observe as _observe
from gaiacnn.demo.physics.observe import _single_labels as _single_labels
from gaiacnn.demo.physics.observe import _spectrum as _spectrum
from gaiacnn.demo.physics.observe import noise_free_observables
from gaiacnn.demo.physics.params import DEFAULT_PARAMS, merge_params
from gaiacnn.demo.physics.params import _lsf_sigma_nm as _lsf_sigma_nm
from gaiacnn.demo.physics.params import _merge as _merge
from gaiacnn.demo.physics.params import _nitrogen_enhancement as _nitrogen_enhancement
from gaiacnn.demo.physics.params import _pixel as _pixel
from gaiacnn.demo.physics.params import _rvs_grid as _rvs_grid
from gaiacnn.demo.physics.params import _sigmoid as _sigmoid
from gaiacnn.demo.physics.params import _theta as _theta
from gaiacnn.demo.physics.params import _with_defaults as _with_defaults
from gaiacnn.demo.physics.population import _alpha_of_m_h as _alpha_of_m_h
from gaiacnn.demo.physics.population import _candidates as _candidates
from gaiacnn.demo.physics.population import _density as _density
from gaiacnn.demo.physics.population import _draw_labels as _draw_labels
from gaiacnn.demo.physics.population import _dust_a_v as _dust_a_v
from gaiacnn.demo.physics.population import _galactocentric as _galactocentric
from gaiacnn.demo.physics.population import _group_quotas as _group_quotas
from gaiacnn.demo.physics.population import _ms_relations as _ms_relations
from gaiacnn.demo.physics.population import _sample_positions as _sample_positions
from gaiacnn.demo.physics.population import radial_velocity_error, simulate_stars
from gaiacnn.demo.physics.rvs import _add_gaussian_line as _add_gaussian_line
from gaiacnn.demo.physics.rvs import _add_line as _add_line
from gaiacnn.demo.physics.rvs import _cog_table as _cog_table
from gaiacnn.demo.physics.rvs import _doppler_sigma_kms as _doppler_sigma_kms
from gaiacnn.demo.physics.rvs import _line_window as _line_window
from gaiacnn.demo.physics.rvs import _paschen_log_eta as _paschen_log_eta
from gaiacnn.demo.physics.rvs import _rvs_flux as _rvs_flux
from gaiacnn.demo.physics.rvs import _rvs_flux_group as _rvs_flux_group
from gaiacnn.demo.physics.rvs import _tio_tau as _tio_tau
from gaiacnn.demo.physics.rvs import equivalent_width
from gaiacnn.demo.physics.rvs import line_log_eta as line_log_eta
from gaiacnn.demo.physics.xp import _band_mags_10pc as _band_mags_10pc
from gaiacnn.demo.physics.xp import _grvs as _grvs
from gaiacnn.demo.physics.xp import _merge_weight_bp as _merge_weight_bp
from gaiacnn.demo.physics.xp import _passbands as _passbands
from gaiacnn.demo.physics.xp import _photometry as _photometry
from gaiacnn.demo.physics.xp import _sed_grid as _sed_grid
from gaiacnn.demo.physics.xp import _sed_photons_10pc as _sed_photons_10pc
from gaiacnn.demo.physics.xp import _xp_coefficients as _xp_coefficients
from gaiacnn.demo.physics.xp import _xp_design_matrices as _xp_design_matrices
from gaiacnn.demo.physics.xp import _zero_points as _zero_points
from gaiacnn.demo.physics.xp import xp_basis, xp_sampled_flux, xp_sampled_wavelength_nm

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
