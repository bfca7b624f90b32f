"""The line list (:data:`LINE_TABLE`), Paschen lines and TiO bands."""

from __future__ import annotations

import math

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
