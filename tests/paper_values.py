"""The values Guiglion et al. 2024 (A&A 682, A9) states, as config keys, each with where
the paper states it.  tests/test_config.py resolves the paper preset (the defaults +
config/variants/paper.yaml) and compares it with this table key by key.  A value the
paper does not state is not here (the preset keeps the default and says "not stated")."""

from __future__ import annotations

#: (config key path, the paper's value, where the paper says so)
PAPER_VALUES: list[tuple[str, object, str]] = [
    # --- Gaia DR3 data (Sect. 2.1-2.3)
    ("rvs.continuum_windows_nm", [[847.5, 849.5], [856.1, 858.2], [862.7, 864.8]], "Sect. 2.1"),
    ("rvs.nan_fill_quantile", 0.75, "Sect. 2.1: the upper quartile Q3"),
    ("selection.gaia.require_xp_continuous", True, "Sect. 2.3"),
    ("selection.gaia.exclude_qso_candidates", True, "Sect. 2.1"),
    ("selection.gaia.exclude_galaxy_candidates", True, "Sect. 2.1"),
    ("selection.gaia.exclude_variable", True, "Sect. 2.1"),
    ("selection.gaia.require_single_star", True, "Sect. 2.1: non_single_star = 0"),
    ("selection.gaia.min_flux_over_error", 500.0, "Sect. 2.2"),
    ("selection.gaia.min_parallax_mas", 0.0, "Sect. 2.2: parallax > 0"),
    ("selection.gaia.exclude_emission_line", True, "Sect. 2.3: classlabel_espels"),
    # --- APOGEE DR17 labels (Sect. 2.4) and the training sample (Sect. 2.5)
    ("selection.apogee.aspcapflag_bits", [7, 23], "Sect. 2.4: STAR_WARN, STAR_BAD"),
    ("selection.apogee.max_aspcap_chi2", 25.0, "Sect. 2.4"),
    ("selection.apogee.fe_h_flag", 0, "Sect. 2.4"),
    ("selection.apogee.min_snr", 70.0, "Sect. 2.4, footnote 5"),
    ("selection.apogee.max_error", {"teff": 100.0, "logg": 0.1, "alpha_m": 0.1}, "Sect. 2.4"),
    ("selection.apogee.metallicity_dependent_error", ["m_h", "fe_h"], "Sect. 2.4"),
    ("selection.apogee.metal_poor_below", -0.5, "Sect. 2.4"),
    ("selection.apogee.max_metal_err_metal_poor", 0.2, "Sect. 2.4"),
    ("selection.apogee.max_metal_err", 0.1, "Sect. 2.4"),
    ("selection.training.min_rvs_snr", 30.0, "Sect. 2.5"),
    ("selection.training.max_parallax_relative_error", 0.2, "Sect. 2.5"),
    ("selection.training.max_ruwe", 1.4, "Sect. 2.5"),
    # --- the hybrid CNN (Sect. 3.1, Fig. 6)
    ("model.branches", ["rvs", "phot", "xp"], "Sect. 3.1: spectra, photometry + parallax, XP"),
    ("model.xp_input", "coefficients", "Sect. 3.1: BP/BP[0], RP/RP[0]"),
    ("model.phot_input", "magnitudes", "Sect. 3.1: G, BP, RP, parallax"),
    ("model.labels", ["teff", "logg", "m_h", "alpha_m", "fe_h"], "Sect. 2.4, Table 2"),
    ("model.arch.conv_filters", [32, 16, 8], "Sect. 3.1, Fig. 6"),
    ("model.arch.kernel_size", 8, "Sect. 3.1, Fig. 6"),
    ("model.arch.rvs_dense", 128, "Fig. 6"),
    ("model.arch.phot_dense", 32, "Fig. 6"),
    ("model.arch.xp_dense", 64, "Fig. 6"),
    ("model.arch.head_dense", [128, 32], "Fig. 6: 224 -> 128 -> 32 -> 5"),
    ("model.arch.dropout", 0.0, "Fig. 6: no dropout layer"),
    ("model.training.early_stopping_patience", 20, "Sect. 3.1"),
    ("model.training.schedule", "plateau", "Sect. 3.1: ReduceLROnPlateau"),
    ("model.training.lr_warmup_epochs", 0, "Sect. 3.1: ReduceLROnPlateau only"),
    ("model.training.validation_fraction", 0.25, "Sect. 3.2: 75 % / 25 %"),
    ("model.training.augment_snr_min", 0.0, "Sect. 3.2: trained on the spectra as they are"),
    ("model.training.augment_parallax_snr_min", 0.0, "Sect. 3.2: idem, parallaxes"),
    ("model.training.augment_xp", False, "Sect. 3.2: idem, XP coefficients"),
    # --- ensemble (Sect. 3.2) and uncertainties (Sect. 3.4)
    ("ensemble.n_splits", 7, "Sect. 3.2"),
    ("ensemble.n_seeds", 4, "Sect. 3.2"),
    ("uncertainty.snr_calibration_bins", 0, "Sect. 3.4: dispersion (+) running-dispersion fit"),
    ("uncertainty.input_distance_calibration_bins", 0, "Sect. 3.4: idem"),
    ("uncertainty.input_noise", [], "Sect. 3.4: idem (no spread under the input noise)"),
    ("uncertainty.range_quantiles", [0.0, 1.0], "Table 1: the training sample's range"),
    # --- t-SNE (Sect. 5.1) and the flag (Sect. 5.2)
    ("tsne.mode", "joint", "Sect. 5.1: training + observed spectra in one map"),
    ("tsne.spectra", "rvs", "Sect. 5.1: all 2401 pixels"),
    ("tsne.pca_components", 0, "Sect. 5.1: all 2401 pixels"),
    ("tsne.perplexities", [30, 50, 75, 100], "Sect. 5.1"),
    ("tsne.threshold_neighbours", 1, "Sect. 5.1: similar to a training spectrum"),
    ("tsne.threshold_neighbours_fraction", 0.0, "Sect. 5.1: idem, whatever the sample size"),
    ("flags.input_digit", False, "Sect. 5.2: 8 digits"),
    ("prediction.precision", "float32", "Sect. 3.2: the models as trained"),
]

#: keys the preset sets though the paper does not state them, and why
PRESET_NOT_STATED: dict[str, str] = {
    "model.training.max_epochs": "no cap stated; minimum typically after 80 epochs (Sect. 3.2)",
}
