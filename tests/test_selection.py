"""Every cut of Sect. 2.1–2.5, including the bitmask and threshold edge cases."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from gaiacnn.selection import (
    SelectionError,
    apogee_cuts,
    apogee_error_ok,
    bit_set,
    cut_report,
    gaia_source_cuts,
    resolve_duplicates,
    select_samples,
    training_cuts,
)

LABELS = {"teff": "TEFF", "logg": "LOGG", "m_h": "M_H", "alpha_m": "ALPHA_M", "fe_h": "FE_H"}


def good_gaia_row(source_id: int) -> dict:
    return dict(
        source_id=source_id,
        ra=10.0 + source_id,
        dec=-20.0,
        has_rvs=True,
        has_xp_continuous=True,
        rvs_spec_sig_to_noise=50.0,
        phot_g_mean_mag=11.0,
        phot_bp_mean_mag=11.5,
        phot_rp_mean_mag=10.4,
        phot_g_mean_flux_over_error=3000.0,
        phot_bp_mean_flux_over_error=1500.0,
        phot_rp_mean_flux_over_error=1500.0,
        parallax=1.0,
        parallax_error=0.02,
        ruwe=1.0,
        non_single_star=0,
        phot_variable_flag="NOT_AVAILABLE",
        in_qso_candidates=False,
        in_galaxy_candidates=False,
        classlabel_espels="",
    )


def good_apogee_row(source_id: int, **kw) -> dict:
    row = dict(
        APOGEE_ID=f"2M{source_id}",
        GAIAEDR3_SOURCE_ID=source_id,
        SNR=150.0,
        EXTRATARG=0,
        ASPCAPFLAG=0,
        ASPCAP_CHI2=5.0,
        FE_H_FLAG=0,
        TEFF=4800.0,
        TEFF_ERR=50.0,
        LOGG=2.5,
        LOGG_ERR=0.05,
        M_H=0.0,
        M_H_ERR=0.02,
        ALPHA_M=0.05,
        ALPHA_M_ERR=0.02,
        FE_H=0.0,
        FE_H_ERR=0.02,
    )
    row.update(kw)
    return row


# One row per Gaia cut that fails it, and rows exactly at a threshold.
GAIA_FAILURES = {
    "has_rvs": dict(has_rvs=False),
    "has_xp_continuous": dict(has_xp_continuous=False),
    "qso_candidates": dict(in_qso_candidates=True),
    "galaxy_candidates": dict(in_galaxy_candidates=True),
    "variable": dict(phot_variable_flag=" variable "),
    "non_single_star": dict(non_single_star=2),
    "g_flux_over_error": dict(phot_g_mean_flux_over_error=500.0),  # needs > 500
    "bp_flux_over_error": dict(phot_bp_mean_flux_over_error=np.nan),
    "rp_flux_over_error": dict(phot_rp_mean_flux_over_error=499.0),
    "parallax": dict(parallax=0.0),  # needs > 0
    "emission_line": dict(classlabel_espels="Be"),
}


def gaia_table() -> pd.DataFrame:
    rows = [
        good_gaia_row(1),
        good_gaia_row(2) | dict(classlabel_espels=None),
        good_gaia_row(3) | dict(phot_g_mean_flux_over_error=500.01, parallax=1e-4),
    ]
    for i, change in enumerate(GAIA_FAILURES.values()):
        rows.append(good_gaia_row(100 + i) | change)
    return pd.DataFrame(rows)


@pytest.mark.parametrize("bit", [0, 7, 23, 31, 32, 40, 62, 63])
def test_bit_set_on_int64_every_position(bit):
    all_ones = (1 << 64) - 1
    flags = np.array([0, 1 << bit, all_ones ^ (1 << bit), all_ones], dtype=np.uint64).view(np.int64)
    assert bit_set(flags, bit).tolist() == [False, True, False, True]


def test_bit_set_ignores_neighbouring_bits():
    flags = np.array([1 << 6, 1 << 8, (1 << 22) | (1 << 24), 1 << 7, 1 << 23], dtype=np.int64)
    assert bit_set(flags, 7).tolist() == [False, False, False, True, False]
    assert bit_set(flags, 23).tolist() == [False, False, False, False, True]


def test_bit_set_refuses_float_flags():
    with pytest.raises(SelectionError):
        bit_set(np.array([128.0]), 7)


def test_each_gaia_cut_removes_exactly_its_row(config):
    table = gaia_table()
    keep, steps = gaia_source_cuts(table, config["selection"]["gaia"])
    assert table.loc[keep, "source_id"].tolist() == [1, 2, 3]
    by_cut = {s.cut: s.removed for s in steps}
    assert by_cut == {cut: 1 for cut in GAIA_FAILURES}
    assert steps[-1].remaining == 3
    assert sum(s.removed for s in steps) == len(table) - 3


def test_gaia_cuts_can_be_switched_off(config):
    cfg = dict(config["selection"]["gaia"], exclude_variable=False, exclude_emission_line=False)
    keep, steps = gaia_source_cuts(gaia_table(), cfg)
    assert keep.sum() == 5
    assert "variable" not in {s.cut for s in steps}


def test_missing_gaia_column_is_named(config):
    with pytest.raises(SelectionError, match="ruwe"):
        gaia_source_cuts(gaia_table().drop(columns="ruwe"), config["selection"]["gaia"])


@pytest.mark.parametrize(
    ("value", "error", "ok"),
    [
        (-0.6, 0.19, True),
        (-0.6, 0.2, False),
        (-0.4, 0.09, True),
        (-0.4, 0.15, False),
        (-0.5, 0.15, False),
        (-0.5, 0.09, True),
        (np.nan, 0.01, False),
        (0.0, np.nan, False),
    ],
)
def test_metallicity_dependent_error_cut(config, value, error, ok):
    cfg = config["selection"]["apogee"]
    assert apogee_error_ok(np.array([value]), np.array([error]), cfg)[0] == ok


APOGEE_FAILURES = {
    "aspcapflag_bit_7": dict(ASPCAPFLAG=(1 << 7) | (1 << 40)),
    "aspcapflag_bit_23": dict(ASPCAPFLAG=1 << 23),
    "aspcap_chi2": dict(ASPCAP_CHI2=25.0),
    "fe_h_flag": dict(FE_H_FLAG=1),
    "apogee_snr": dict(SNR=69.9),
    "teff_error": dict(TEFF_ERR=100.0),
    "logg_error": dict(LOGG_ERR=0.1),
    "m_h_error": dict(M_H=-0.3, M_H_ERR=0.12),
    "alpha_m_error": dict(ALPHA_M_ERR=np.nan),
    "fe_h_error": dict(FE_H=-1.0, FE_H_ERR=0.25),
}


def apogee_table() -> pd.DataFrame:
    rows = [
        good_apogee_row(1, ASPCAPFLAG=(1 << 32) | (1 << 8)),  # harmless bits only
        good_apogee_row(2, M_H=-1.2, M_H_ERR=0.15, FE_H=-1.2, FE_H_ERR=0.15, SNR=70.0),
        good_apogee_row(999),  # not in the Gaia sample
        good_apogee_row(0),  # no Gaia id
    ]
    for i, change in enumerate(APOGEE_FAILURES.values()):
        rows.append(good_apogee_row(100 + i) | change)
    return pd.DataFrame(rows)


def test_each_apogee_cut_removes_exactly_its_row(config):
    table = apogee_table()
    gaia_ids = np.array([1, 2] + [100 + i for i in range(len(APOGEE_FAILURES))])
    keep, steps = apogee_cuts(table, gaia_ids, config["selection"]["apogee"], LABELS)
    assert table.loc[keep, "GAIAEDR3_SOURCE_ID"].tolist() == [1, 2]
    by_cut = {s.cut: s.removed for s in steps}
    assert by_cut.pop("crossmatch") == 2
    assert by_cut.pop("duplicates") == 0
    assert by_cut == {cut: 1 for cut in APOGEE_FAILURES}


def test_duplicates_keep_main_entry_then_highest_snr():
    table = pd.DataFrame(
        [
            good_apogee_row(5, SNR=300.0, EXTRATARG=1 << 4),  # flagged DUPLICATE
            good_apogee_row(5, SNR=100.0),
            good_apogee_row(5, SNR=200.0),
            good_apogee_row(6, SNR=80.0, EXTRATARG=1 << 4),
            good_apogee_row(6, SNR=90.0, EXTRATARG=1 << 4),
            good_apogee_row(7),
        ]
    )
    keep = resolve_duplicates(table, "keep_best", 4)
    assert keep.tolist() == [False, False, True, False, True, True]
    drop = resolve_duplicates(table, "drop_all", 4)
    assert drop.tolist() == [False, False, False, False, False, True]


def test_training_cuts_thresholds(config):
    rows = pd.DataFrame(
        [
            good_gaia_row(1) | dict(rvs_spec_sig_to_noise=30.0),
            good_gaia_row(2) | dict(rvs_spec_sig_to_noise=29.99),
            good_gaia_row(3) | dict(parallax=0.25, parallax_error=0.05),  # exactly 20 %
            good_gaia_row(4) | dict(parallax=0.1, parallax_error=0.0199),
            good_gaia_row(5) | dict(ruwe=1.4),
            good_gaia_row(6) | dict(ruwe=np.nan),
        ]
    )
    keep, steps = training_cuts(rows, config["selection"]["training"])
    assert rows.loc[keep, "source_id"].tolist() == [1, 4]
    assert [s.removed for s in steps] == [1, 1, 2]


def test_samples_partition_and_report_adds_up(config):
    gaia = gaia_table()
    gaia.loc[gaia.source_id == 2, "rvs_spec_sig_to_noise"] = 20.0  # labelled, low S/N
    apogee = pd.DataFrame(
        [good_apogee_row(1), good_apogee_row(2), good_apogee_row(1, SNR=80.0), good_apogee_row(100)]
    )  # 100 fails a Gaia cut
    samples = select_samples(gaia, apogee, config["selection"], LABELS)
    assert samples.training["source_id"].tolist() == [1]
    assert samples.observed["source_id"].tolist() == [2, 3]
    # Observed stars keep their good APOGEE labels as reference, never as inputs.
    ref = samples.observed.set_index("source_id")
    assert ref.loc[2, "teff"] == 4800.0 and np.isnan(ref.loc[3, "teff"])
    report = cut_report(samples, len(gaia))
    gaia_rows = report[report.stage == "gaia_source"]
    assert len(gaia) - gaia_rows.removed.sum() == gaia_rows.remaining.iloc[-1] == 3
    ap = report[report.stage == "apogee"]
    assert ap.removed.sum() == len(apogee) - ap.remaining.iloc[-1]
    assert ap[ap.cut == "duplicates"].removed.iloc[0] == 1
    tr = report[report.stage == "training"]
    assert ap.remaining.iloc[-1] - tr.removed.sum() == len(samples.training)
    assert len(samples.training) + len(samples.observed) == gaia_rows.remaining.iloc[-1]


def test_duplicate_gaia_ids_are_refused(config):
    gaia = pd.concat([gaia_table(), gaia_table().iloc[:1]])
    with pytest.raises(SelectionError, match="duplicated source_id 1"):
        select_samples(gaia, apogee_table(), config["selection"], LABELS)


def test_missing_label_column_is_named(config):
    with pytest.raises(SelectionError, match="ALPHA_M_ERR"):
        apogee_cuts(
            apogee_table().drop(columns="ALPHA_M_ERR"),
            np.array([1]),
            config["selection"]["apogee"],
            LABELS,
        )
