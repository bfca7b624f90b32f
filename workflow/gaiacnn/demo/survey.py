"""The offline demo survey, shaped like the archive.

Writes, from a seed, exactly what the real data path produces:

* ``gaia_source.fits``: a ``gaiadr3.gaia_source``-like table (+ ``classlabel_espels``
  of ``gaiadr3.astrophysical_parameters``) with the columns the cuts use, and a DR3-like
  ``radial_velocity_error`` [km/s] (:func:`gaiacnn.demo.physics.radial_velocity_error`,
  from its own child seed of each chunk's, so that no other value depends on it; none
  with ``demo.physics.rv_error.enabled: false``);
* ``allStar.fits``: an APOGEE DR17 allStar-like table (``GAIAEDR3_SOURCE_ID``,
  labels and ``_ERR``, 64-bit ``ASPCAPFLAG``, ``ASPCAP_CHI2``, ``FE_H_FLAG``,
  ``SNR``, ``EXTRATARG``, duplicates, rows with no Gaia match);
* ``rvs_xp.h5``: the raw spectra store in the interchange layout (RVS flux with
  NaN edge pixels as in DR3, flux errors, XP coefficients and their errors, and XP
  sampled spectra in W m⁻² nm⁻¹ on GaiaXPy's default grid, computed from those noisy coefficients as
  GaiaXPy's ``calibrate`` would: :func:`gaiacnn.demo.physics.xp_sampled_flux`);
* ``truth.h5``: the true labels and population of every star, never an input,
  with the Cramér–Rao bound of each label at the star's S/N.

The star physics lives in :mod:`gaiacnn.demo.physics`; this module dresses it as
archive tables.  Generation streams in chunks of ``chunk_size`` stars, each with
its own child of ``SeedSequence(seed)``, so memory is bounded and the output is
byte-identical for a seed and chunk size.
"""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from astropy import units as u
from astropy.coordinates import SkyCoord
from tqdm.auto import tqdm

from gaiacnn import layout
from gaiacnn.constants import (
    ASPCAPFLAG_STAR_BAD_BIT,
    ASPCAPFLAG_STAR_WARN_BIT,
    EXTRATARG_DUPLICATE_BIT,
    XP_N_COEFFICIENTS,
    rvs_wavelength_nm,
)
from gaiacnn.demo import physics
from gaiacnn.layout import RVS_FLUX_DATASET, RVS_FLUX_ERROR_DATASET, XP_SAMPLED_DATASET
from gaiacnn.tables import write_fits_table

log = logging.getLogger(__name__)

#: APOGEE ASPCAPFLAG bits used to dress the demo table (ARCHIVE_NOTES).
SN_WARN_BIT = 11
CHI2_WARN_BIT = 8
#: Bits above 31 that carry no cut: they check that the flag code is 64-bit clean.
HARMLESS_HIGH_BITS = (32, 40)
#: APOGEE-label noise floors at SNR = 100 (K, dex): typical DR17 ASPCAP errors.
APOGEE_ERR_AT_SNR100 = {"teff": 45.0, "logg": 0.035, "m_h": 0.018, "alpha_m": 0.02, "fe_h": 0.02}
LABEL_COLUMNS = {"teff": "TEFF", "logg": "LOGG", "m_h": "M_H", "alpha_m": "ALPHA_M", "fe_h": "FE_H"}
GAIA_UNITS = {
    "ra": "deg",
    "dec": "deg",
    "l": "deg",
    "b": "deg",
    "parallax": "mas",
    "parallax_error": "mas",
    "radial_velocity_error": "km/s",
    "phot_g_mean_mag": "mag",
    "phot_bp_mean_mag": "mag",
    "phot_rp_mean_mag": "mag",
}
# Like the real allStar file, only Kelvin is a FITS unit; the dex columns carry none.
APOGEE_UNITS = {"TEFF": "K", "TEFF_ERR": "K"}
#: ``flux_kind`` of the raw store's ``xp/sampled_flux``: absolute W m-2 nm-1, as GaiaXPy's
#: ``calibrate`` writes it (the layout's other value, "normalised", is for other surveys).
XP_FLUX_KIND = "absolute"


def _source_ids(ra: np.ndarray, dec: np.ndarray, first_index: int) -> np.ndarray:
    """Gaia-like source ids: a level-12-sized sky cell in the high bits, a running number below.

    (Gaia encodes the HEALPix level-12 nested index as ``source_id // 2**35``; the cell
    here is a simple equal-area ra/sin(dec) grid of the same size, enough for realistic
    magnitudes; the running number makes every id unique.)
    """
    n_side = 14189  # ~sqrt(12 * 4**12)
    i = np.clip(((np.sin(np.radians(dec)) + 1) / 2 * n_side).astype(np.int64), 0, n_side - 1)
    j = np.clip((ra / 360.0 * n_side).astype(np.int64), 0, n_side - 1)
    cell = (i * n_side + j) % (12 * 4**12)
    return cell * 2**35 + first_index + np.arange(len(ra), dtype=np.int64)


def _apogee_ids(ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    """2MASS-style APOGEE_ID strings ``2Mhhmmssss+ddmmsss`` from ICRS ra/dec [deg]."""
    c = SkyCoord(ra=ra * u.deg, dec=dec * u.deg)
    r = c.ra.hms
    d = c.dec.signed_dms
    return np.array(
        [
            f"2M{int(h):02d}{int(m):02d}{int(s * 100):04d}{'+' if sg >= 0 else '-'}"
            f"{int(dd):02d}{int(dm):02d}{int(ds * 10):03d}"
            for h, m, s, sg, dd, dm, ds in zip(r.h, r.m, r.s, d.sign, d.d, d.m, d.s, strict=True)
        ]
    )


def _gaia_flags(
    rng: np.random.Generator,
    truth: Mapping[str, np.ndarray],
    cfg: Mapping,
) -> dict[str, np.ndarray]:
    """Archive flags of Sect. 2.1–2.3 with the frequencies of ``cfg['flags']``."""
    n = len(truth["teff"])
    f = cfg["flags"]
    is_binary = np.asarray(truth["is_binary"], dtype=bool)
    nss = np.zeros(n, dtype=np.int16)
    solved = rng.random(n) < f["non_single_star"]
    # Most wide/unresolved binaries have no orbital solution in DR3: they stay nss = 0
    # and show up through RUWE instead (the boundary flag must find them).
    solved |= is_binary & (rng.random(n) < f["binary_with_nss_solution"])
    nss[solved] = rng.choice(np.array([1, 2, 3], dtype=np.int16), size=int(solved.sum()))
    variable = np.where(rng.random(n) < f["variable"], "VARIABLE", "NOT_AVAILABLE")
    hot = truth["teff"] > 9000.0
    espels = np.full(n, "", dtype=object)
    be = (hot & (rng.random(n) < f["emission_line_hot"])) | (rng.random(n) < f["emission_line"])
    espels[be] = np.where(hot[be], "Be", "TTS")
    has_xp = rng.random(n) >= f["no_xp_continuous"]
    return {
        "has_rvs": np.ones(n, dtype=bool),
        "has_xp_continuous": has_xp,
        "non_single_star": nss,
        "phot_variable_flag": variable.astype(object),
        "in_qso_candidates": rng.random(n) < f["qso_candidate"],
        "in_galaxy_candidates": rng.random(n) < f["galaxy_candidate"],
        "classlabel_espels": espels,
    }


def _apogee_rows(
    rng: np.random.Generator,
    truth: Mapping[str, np.ndarray],
    g_mag: np.ndarray,
    ids: np.ndarray,
    ra: np.ndarray,
    dec: np.ndarray,
    cfg: Mapping,
    match_fraction: float | None = None,
) -> dict[str, np.ndarray]:
    """allStar-like rows for the stars APOGEE observed (its own noise, flags and duplicates);
    ``match_fraction``: one probability of a match for every star (shifted field), instead
    of the G-dependent ones of ``cfg["apogee"]``."""
    a = cfg["apogee"]
    g_lo, g_hi = a["g_range"]
    # APOGEE's H-band selection: most matches between G ~ 7 and ~14, few outside.
    in_range = (g_mag > g_lo) & (g_mag < g_hi)
    p = np.where(in_range, a["match_fraction"], a["match_fraction_outside"])
    if match_fraction is not None:
        p = np.full(len(ids), float(match_fraction))
    hit = np.nonzero(rng.random(len(ids)) < p)[0]
    n_dup = round(a["duplicate_fraction"] * hit.size)
    dups = rng.choice(hit, size=n_dup, replace=False) if n_dup else np.array([], dtype=int)
    rows = np.concatenate([hit, dups])
    is_dup = np.zeros(rows.size, dtype=bool)
    is_dup[hit.size :] = True
    m = rows.size
    snr = np.exp(rng.normal(np.log(a["snr_median"]), a["snr_log_sigma"], m))
    teff = truth["teff"][rows]
    m_h = truth["m_h"][rows]
    out: dict[str, np.ndarray] = {
        "APOGEE_ID": _apogee_ids(ra[rows], dec[rows]).astype(object),
        "GAIAEDR3_SOURCE_ID": ids[rows].astype(np.int64),
        "SNR": snr.astype(np.float32),
    }
    scale = np.sqrt(100.0 / np.clip(snr, 5, None))
    metal_poor = 1.0 + 0.8 * np.clip(-0.5 - m_h, 0, None)
    outlier = np.where(rng.random(m) < a["error_outlier_fraction"], 4.0, 1.0)
    for name, col in LABEL_COLUMNS.items():
        base = APOGEE_ERR_AT_SNR100[name] * scale * outlier
        if name in ("m_h", "fe_h", "alpha_m"):
            base = base * metal_poor
        err = base * np.exp(rng.normal(0.0, 0.25, m))
        out[col] = (truth[name][rows] + rng.normal(0.0, 1.0, m) * err).astype(np.float32)
        out[f"{col}_ERR"] = err.astype(np.float32)
    chi2 = np.exp(rng.normal(np.log(a["chi2_median"]), 0.6, m))
    chi2[np.asarray(truth["is_binary"], bool)[rows]] *= 6.0
    flag = np.zeros(m, dtype=np.int64)
    warn = (rng.random(m) < a["star_warn_fraction"]) | (snr < 70.0)
    bad = rng.random(m) < a["star_bad_fraction"]
    # ASPCAP's grids stop near 3 500 K and 7 000 K: such stars get STAR_BAD.
    bad |= (teff > a["star_bad_teff_above"]) | (teff < a["star_bad_teff_below"])
    # By construction of the demo, the observed-only populations (OB stars, M giants, cool
    # dwarfs, binaries) never get usable ASPCAP labels: they must stay out of training so
    # that the boundary flag has something to find.
    ood_codes = [physics.POPULATION_CODES[name] for name in physics.OOD_POPULATIONS]
    bad |= np.isin(truth["population"][rows], ood_codes)
    flag[snr < 70.0] |= np.int64(1 << SN_WARN_BIT)
    flag[chi2 > 25.0] |= np.int64(1 << CHI2_WARN_BIT)
    flag[warn] |= np.int64(1 << ASPCAPFLAG_STAR_WARN_BIT)
    flag[bad] |= np.int64(1 << ASPCAPFLAG_STAR_BAD_BIT)
    for bit in HARMLESS_HIGH_BITS:
        flag[rng.random(m) < 0.1] |= np.int64(1 << bit)
    out["ASPCAPFLAG"] = flag
    out["ASPCAP_CHI2"] = chi2.astype(np.float32)
    out["FE_H_FLAG"] = (rng.random(m) < a["fe_h_flag_fraction"]).astype(np.int32)
    extratarg = np.zeros(m, dtype=np.int32)
    extratarg[is_dup] |= 1 << EXTRATARG_DUPLICATE_BIT
    out["EXTRATARG"] = extratarg
    failed = rng.random(m) < a["failed_fit_fraction"]
    for col in LABEL_COLUMNS.values():
        out[col][failed] = np.nan
        out[f"{col}_ERR"][failed] = np.nan
    return out


def _unmatched_apogee_rows(
    rng: np.random.Generator, n: int, first_index: int
) -> dict[str, np.ndarray]:
    """allStar rows of stars outside the Gaia RVS sample (id 0 or an id not in gaia_source)."""
    ra = rng.uniform(0, 360, n)
    dec = np.degrees(np.arcsin(rng.uniform(-1, 1, n)))
    ids = _source_ids(ra, dec, first_index)
    ids[rng.random(n) < 0.3] = 0
    out = {
        "APOGEE_ID": _apogee_ids(ra, dec).astype(object),
        "GAIAEDR3_SOURCE_ID": ids,
        "SNR": rng.uniform(50, 400, n).astype(np.float32),
    }
    for col in LABEL_COLUMNS.values():
        out[col] = rng.normal(0.0, 0.2, n).astype(np.float32)
        out[f"{col}_ERR"] = np.full(n, 0.03, np.float32)
    out["TEFF"] = rng.uniform(3800, 6500, n).astype(np.float32)
    out["TEFF_ERR"] = np.full(n, 50.0, np.float32)
    out["LOGG"] = rng.uniform(1.0, 4.6, n).astype(np.float32)
    out["ASPCAPFLAG"] = np.zeros(n, np.int64)
    out["ASPCAP_CHI2"] = rng.uniform(1, 10, n).astype(np.float32)
    out["FE_H_FLAG"] = np.zeros(n, np.int32)
    out["EXTRATARG"] = np.zeros(n, np.int32)
    return out


def generate(
    cfg: Mapping,
    out_gaia: str | os.PathLike,
    out_apogee: str | os.PathLike,
    out_raw: str | os.PathLike,
    out_truth: str | os.PathLike,
    *,
    progress: bool = True,
) -> dict[str, int]:
    """Generate the demo survey described by ``cfg`` (``config["demo"]``) into four files.

    ``cfg["shift"]["n_stars"]`` > 0 adds that many stars of an observed field unlike the
    training stars (farther, more reddened, worse parallaxes, other S/N:
    :func:`shift_params`), after the ``n_stars`` ordinary ones, which stay byte-identical
    to the survey without them; ``truth/shifted`` marks them.  APOGEE observed them with
    probability ``shift.apogee_match_fraction``: the few reference labels a user has there.
    """
    n_main = int(cfg["n_stars"])
    chunk = int(cfg["chunk_size"])
    params = physics.merge_params(cfg.get("physics", {}))
    shift = dict(cfg.get("shift") or {})
    n_shift = int(shift.get("n_stars", 0))
    n = n_main + n_shift
    n_chunks = -(-n_main // chunk)
    root = np.random.SeedSequence(int(cfg["seed"]))
    seeds = root.spawn(n_chunks + 1)
    # The shifted stars' chunks: seeds spawned after the ordinary ones, so that those keep
    # theirs; source ids from SHIFT_FIRST_INDEX up (no clash with the running numbers).
    n_shift_chunks = -(-n_shift // chunk)
    shift_seeds = root.spawn(n_shift_chunks) if n_shift else []
    shifted_params = physics.merge_params(shift_params(cfg)) if n_shift else params
    # (first running number, stars, seed, physics, shifted) of every chunk
    plan = [
        (k * chunk, min(chunk, n_main - k * chunk), seeds[k], params, False)
        for k in range(n_chunks)
    ]
    plan += [
        (SHIFT_FIRST_INDEX + k * chunk, min(chunk, n_shift - k * chunk), s, shifted_params, True)
        for k, s in enumerate(shift_seeds)
    ]
    wl = rvs_wavelength_nm()
    n_xp = XP_N_COEFFICIENTS
    xp_wl = physics.xp_sampled_wavelength_nm()
    raw_cols = {
        "source_id": ((), np.int64, {}),
        RVS_FLUX_DATASET: ((wl.size,), np.float32, {"wavelength_nm": wl}),
        RVS_FLUX_ERROR_DATASET: ((wl.size,), np.float32, {}),
        "xp/bp_coefficients": ((n_xp,), np.float32, {}),
        "xp/rp_coefficients": ((n_xp,), np.float32, {}),
        "xp/bp_coefficient_errors": ((n_xp,), np.float32, {}),
        "xp/rp_coefficient_errors": ((n_xp,), np.float32, {}),
        XP_SAMPLED_DATASET: (
            (xp_wl.size,),
            np.float32,
            {"wavelength_nm": xp_wl, "flux_kind": XP_FLUX_KIND},
        ),
    }
    crlb_inputs = tuple(cfg["crlb_inputs"])
    truth_cols: dict[str, tuple] = {"source_id": ((), np.int64, {})}
    truth_scalars = (
        "teff",
        "logg",
        "m_h",
        "alpha_m",
        "fe_h",
        "mass",
        "distance_pc",
        "a_v",
        "rv_shift_kms",
        "R_kpc",
        "z_kpc",
        "l_deg",
        "b_deg",
    )
    for key in truth_scalars:
        truth_cols[f"truth/{key}"] = ((), np.float64, {})
    for key in ("population", "stage"):
        truth_cols[f"truth/{key}"] = ((), np.int8, {})
    truth_cols["truth/is_binary"] = ((), np.bool_, {})
    truth_cols["truth/shifted"] = ((), np.bool_, {})
    truth_cols["truth/snr"] = ((), np.float32, {})
    for kind in crlb_inputs:
        for label in physics.LABELS:
            truth_cols[f"crlb_{kind}/{label}"] = ((), np.float64, {})
    extra = {"shift": shift} if n_shift else {}
    prov = layout.provenance_attr(
        source="demo", seed=int(cfg["seed"]), n_stars=n_main, chunk_size=chunk, **extra
    )
    attrs = {
        "provenance": prov,
        "population_codes": layout.provenance_attr(**physics.POPULATION_CODES),
        "stage_codes": layout.provenance_attr(**physics.STAGE_CODES),
    }
    gaia_parts: list[dict[str, np.ndarray]] = []
    apogee_parts: list[dict[str, np.ndarray]] = []
    with (
        layout.ArraysWriter(
            out_raw, n, raw_cols, attrs={"sample": "raw", **attrs}, chunk_rows=256
        ) as raw,
        layout.ArraysWriter(
            out_truth, n, truth_cols, attrs={"sample": "truth", **attrs}, chunk_rows=4096
        ) as tru,
    ):
        for first, m, seed, par, shifted in tqdm(
            plan, desc="demo survey", unit="chunk", disable=not progress
        ):
            rng = np.random.default_rng(seed)
            truth, obs = physics.simulate_stars(rng, m, par)
            coords = SkyCoord(
                l=truth["l_deg"] * u.deg, b=truth["b_deg"] * u.deg, frame="galactic"
            ).icrs
            ra, dec = coords.ra.deg, coords.dec.deg
            ids = _source_ids(ra, dec, first)
            flags = _gaia_flags(rng, truth, cfg)
            bp = obs["bp_coefficients"].copy()
            rp = obs["rp_coefficients"].copy()
            bp_err = obs["bp_coefficient_errors"].copy()
            rp_err = obs["rp_coefficient_errors"].copy()
            for arr in (bp, rp, bp_err, rp_err):
                arr[~flags["has_xp_continuous"]] = np.nan
            raw.append(
                {
                    "source_id": ids,
                    RVS_FLUX_DATASET: obs["flux"],
                    RVS_FLUX_ERROR_DATASET: obs["flux_error"],
                    "xp/bp_coefficients": bp,
                    "xp/rp_coefficients": rp,
                    "xp/bp_coefficient_errors": bp_err,
                    "xp/rp_coefficient_errors": rp_err,
                    # NaN rows (no XP continuous spectrum) stay NaN.
                    XP_SAMPLED_DATASET: physics.xp_sampled_flux(bp, rp, xp_wl),
                }
            )
            row = {"source_id": ids}
            for key in truth_scalars:
                row[f"truth/{key}"] = truth[key]
            row["truth/population"] = truth["population"]
            row["truth/stage"] = truth["stage"]
            row["truth/is_binary"] = truth["is_binary"]
            row["truth/shifted"] = np.full(m, shifted)
            row["truth/snr"] = obs["snr"]
            for kind in crlb_inputs:
                bound = physics.cramer_rao_bound(truth, obs, par, inputs=kind)
                for label in physics.LABELS:
                    row[f"crlb_{kind}/{label}"] = bound[label]
            tru.append(row)
            g = obs["phot_g_mean_mag"]
            plx_over_err = obs["parallax"] / obs["parallax_error"]
            gaia_parts.append(
                {
                    "source_id": ids,
                    "ra": ra,
                    "dec": dec,
                    "l": truth["l_deg"],
                    "b": truth["b_deg"],
                    **{key: flags[key] for key in ("has_rvs", "has_xp_continuous")},
                    "rvs_spec_sig_to_noise": obs["snr"],
                    "phot_g_mean_mag": g,
                    "phot_bp_mean_mag": obs["phot_bp_mean_mag"],
                    "phot_rp_mean_mag": obs["phot_rp_mean_mag"],
                    "phot_g_mean_flux_over_error": obs["phot_g_mean_flux_over_error"],
                    "phot_bp_mean_flux_over_error": obs["phot_bp_mean_flux_over_error"],
                    "phot_rp_mean_flux_over_error": obs["phot_rp_mean_flux_over_error"],
                    "parallax": obs["parallax"],
                    "parallax_error": obs["parallax_error"],
                    "parallax_over_error": plx_over_err.astype(np.float32),
                    "ruwe": obs["ruwe"],
                    **{
                        key: flags[key]
                        for key in (
                            "non_single_star",
                            "phot_variable_flag",
                            "in_qso_candidates",
                            "in_galaxy_candidates",
                            "classlabel_espels",
                        )
                    },
                }
            )
            if par["rv_error"]["enabled"]:
                # its own generator, a child of the chunk's seed: every other value of the
                # survey stays what it is without this column (demo.physics.rv_error)
                rv_rng = np.random.default_rng(seed.spawn(1)[0])
                gaia_parts[-1]["radial_velocity_error"] = physics.radial_velocity_error(
                    rv_rng, truth["teff"], obs["snr"], par
                )
            match = shift["apogee_match_fraction"] if shifted else None
            apogee_parts.append(_apogee_rows(rng, truth, g, ids, ra, dec, cfg, match))
    rng = np.random.default_rng(seeds[-1])
    n_ap = sum(len(p["SNR"]) for p in apogee_parts)
    apogee_parts.append(
        _unmatched_apogee_rows(rng, round(cfg["apogee"]["unmatched_fraction"] * n_ap), n_main + 1)
    )
    gaia = {key: np.concatenate([p[key] for p in gaia_parts]) for key in gaia_parts[0]}
    apogee = {key: np.concatenate([p[key] for p in apogee_parts]) for key in apogee_parts[0]}
    meta = {"ORIGIN": "gaiacnn demo survey", "SEED": int(cfg["seed"])}
    write_fits_table(gaia, out_gaia, units=GAIA_UNITS, meta=meta)
    write_fits_table(apogee, out_apogee, units=APOGEE_UNITS, meta=meta)
    return {"n_stars": n, "n_shifted": n_shift, "n_apogee_rows": len(apogee["SNR"])}


#: First running number of the shifted field's source ids (below 2**35, above any n_stars).
SHIFT_FIRST_INDEX = 10**10
#: ``demo.shift`` keys that are physics factors (:data:`physics.DEFAULT_PARAMS`
#: ``observed_shift``).
SHIFT_FACTORS = ("distance_factor", "a_v_factor", "parallax_error_factor", "snr_factor")


def shift_params(cfg: Mapping) -> dict:
    """``demo.physics`` overrides with ``demo.shift``'s factors as ``observed_shift``."""
    over = copy.deepcopy(dict(cfg.get("physics") or {}))
    over["observed_shift"] = {k: float(cfg["shift"][k]) for k in SHIFT_FACTORS}
    return over


def default_paths(folder: str | os.PathLike) -> dict[str, Path]:
    """The four files of a demo survey in ``folder``."""
    f = Path(folder)
    return {
        "gaia_source": f / "gaia_source.fits",
        "allstar": f / "allStar.fits",
        "raw": f / "rvs_xp.h5",
        "truth": f / "truth.h5",
    }


def run_demo_survey(demo_cfg: Mapping, gaia_out, apogee_out, raw_out, truth_out) -> None:
    """Rule ``demo_survey``."""
    counts = generate(demo_cfg, gaia_out, apogee_out, raw_out, truth_out)
    log.info("demo survey: %(n_stars)d RVS stars, %(n_apogee_rows)d allStar rows", counts)
