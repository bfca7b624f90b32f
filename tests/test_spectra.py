"""NaN pixels -> upper quartile of the three continuum windows (Sect. 2.1)."""

from __future__ import annotations

import numpy as np
import pytest

from gaiacnn.constants import CONTINUUM_WINDOWS_NM, rvs_wavelength_nm
from gaiacnn.spectra import fill_nan_pixels, window_mask

WL = rvs_wavelength_nm()


def test_windows_cover_the_papers_pixels():
    mask = window_mask(WL, CONTINUUM_WINDOWS_NM)
    # 847.5-849.5, 856.1-858.2, 862.7-864.8 nm at 0.01 nm: 201 + 211 + 211 pixels.
    assert mask.sum() == 201 + 211 + 211
    assert mask[np.searchsorted(WL, 847.5)] and not mask[np.searchsorted(WL, 847.49)]


def test_nan_pixels_get_the_q3_of_the_windows_only():
    rng = np.random.default_rng(1)
    flux = rng.uniform(0.2, 1.1, size=(3, WL.size)).astype(np.float32)
    flux[0, :25] = np.nan
    flux[0, -7:] = np.nan
    flux[2, 1000] = np.nan  # inside a line region
    mask = window_mask(WL, CONTINUUM_WINDOWS_NM)
    expected0 = np.quantile(flux[0, mask], 0.75)
    expected2 = np.quantile(flux[2, mask], 0.75)
    filled, n = fill_nan_pixels(flux, WL)
    assert n.tolist() == [32, 0, 1]
    np.testing.assert_allclose(filled[0, :25], expected0, rtol=1e-6)
    np.testing.assert_allclose(filled[0, -7:], expected0, rtol=1e-6)
    assert filled[2, 1000] == pytest.approx(expected2, rel=1e-6)
    # A pixel outside the windows does not enter the quartile.
    flux2 = flux.copy()
    flux2[0, 30] = 100.0
    assert fill_nan_pixels(flux2, WL)[0][0, 0] == pytest.approx(expected0, rel=1e-6)
    np.testing.assert_array_equal(filled[1], flux[1])  # untouched row
    assert np.isfinite(filled).all()


def test_nan_inside_a_window_is_excluded_from_the_quartile():
    flux = np.ones((1, WL.size), np.float32)
    mask = window_mask(WL, CONTINUUM_WINDOWS_NM)
    flux[0, mask] = np.linspace(0.9, 1.0, mask.sum())
    first = np.nonzero(mask)[0][0]
    flux[0, first] = np.nan
    expected = np.quantile(flux[0, mask][1:], 0.75)
    filled, _ = fill_nan_pixels(flux, WL)
    assert filled[0, first] == pytest.approx(expected, rel=1e-6)


def test_all_nan_spectrum_is_refused():
    flux = np.ones((3, WL.size), np.float32)
    flux[1] = np.nan
    with pytest.raises(ValueError, match=r"rows \[1\]"):
        fill_nan_pixels(flux, WL)


def test_other_grid_without_windows_falls_back_to_all_pixels():
    wl = np.linspace(500.0, 510.0, 101)
    flux = np.linspace(0.5, 1.0, 101, dtype=np.float32)[None, :].copy()
    flux[0, 0] = np.nan
    filled, _ = fill_nan_pixels(flux, wl)
    assert filled[0, 0] == pytest.approx(np.quantile(flux[0, 1:], 0.75), rel=1e-6)
