"""Accuracy and uncertainty figures (Figs. 7, 8, 13, 15 and the demo's truth figures)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from figure_data import check_rendered, make_products, render_recorded

from gaiacnn.figures import accuracy, style
from gaiacnn.figures.context import Context, snr_edges
from gaiacnn.figures.render import read_index, render_all

NAMES = {
    "residuals": "fig07_residuals",
    "training_uncertainties": "fig08_training_uncertainties",
    "observed_uncertainties": "fig13_observed_uncertainties",
    "metal_poor": "fig15_metal_poor",
    "demo_truth_residuals_snr": "demo_truth_residuals_snr",
    "demo_sigma_coverage": "demo_sigma_coverage",
}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    return make_products(tmp_path_factory.mktemp("products"), member=False)


@pytest.fixture(scope="module")
def rendered(inputs, tmp_path_factory):
    out = tmp_path_factory.mktemp("figures") / "accuracy"
    index, sizes = render_recorded(Context(inputs, {}), out, accuracy.FIGURES)
    return out, index, sizes


def test_every_figure_is_drawn_at_its_size_and_not_blank(rendered):
    out, index, sizes = rendered
    assert index["skipped"] == []
    assert [f["name"] for f in index["figures"]] == list(NAMES.values())
    assert read_index(out) == index
    check_rendered(out, index, sizes)
    assert all(w in (style.PAGE_WIDTH, style.COLUMN_WIDTH) for w, _ in sizes.values())


def test_figure_orders_and_names():
    assert [fn.__name__ for fn in accuracy.FIGURES] == list(NAMES)
    assert [fn.order for fn in accuracy.FIGURES] == [7, 8, 13, 15, 100, 101]


def test_captions_count_the_stars(rendered, inputs):
    _, index, _ = rendered
    ctx = Context(inputs, {})
    by_name = {f["name"]: f for f in index["figures"]}
    n_train = int(ctx.in_training.sum())
    assert style.stars(n_train) in by_name["fig08_training_uncertainties"]["caption"]
    assert by_name["fig08_training_uncertainties"]["n_stars"] == n_train
    n_in, n_out = int(ctx.inside.sum()), int(ctx.outside.sum())
    assert by_name["fig13_observed_uncertainties"]["n_stars"] == n_in + n_out
    assert style.stars(n_in) in by_name["fig13_observed_uncertainties"]["caption"]


def test_demo_figures_skip_without_truth(inputs, tmp_path):
    ctx = Context(dataclasses.replace(inputs, truth=None), {})
    functions = [accuracy.demo_truth_residuals_snr, accuracy.demo_sigma_coverage]
    index = render_all(ctx, tmp_path / "f", formats=("png",), functions=functions)
    assert index["figures"] == []
    assert [s["function"] for s in index["skipped"]] == [fn.__name__ for fn in functions]
    assert all("truth" in s["reason"] for s in index["skipped"])


def test_metal_poor_skips_with_too_few_stars(inputs, tmp_path):
    ctx = Context(inputs, {"metal_poor": {"max_m_h": -9.0, "snr": [15.0, 25.0]}})
    index = render_all(ctx, tmp_path / "f", formats=("png",), functions=[accuracy.metal_poor])
    assert index["figures"] == []
    assert index["skipped"][0]["function"] == "metal_poor"


def test_coverage_of_a_hand_made_case():
    sigma = np.full(8, 2.0)
    resid = np.array([1.0, -1.0, 4.0, -4.0, 2.0, -0.5, 5.0, np.nan])  # ±0.5σ, ±2σ; ±1σ, ...
    snr = np.array([20.0, 20.0, 20.0, 20.0, 50.0, 50.0, 50.0, 50.0])
    frac, n = accuracy.coverage(resid, sigma, snr, [15.0, 25.0, 35.0, np.inf])
    np.testing.assert_array_equal(n, [4, 0, 3])  # the NaN residual is not counted
    np.testing.assert_allclose(frac[[0, 2]], [0.5, 2 / 3])  # |Δ| = σ counts as within
    assert np.isnan(frac[1])


def test_snr_edges_and_bin_stats():
    np.testing.assert_array_equal(snr_edges({}), [15, 25, 35, 75, np.inf])
    np.testing.assert_array_equal(snr_edges({"snr_edges": [10, 20]}), [10, 20, np.inf])
    assert accuracy.snr_bin_names([15, 25, np.inf]) == ["15–25", "≥25"]
    resid = np.arange(101.0) - 50.0  # median 0, 16th/84th percentiles ∓34
    snr = np.full(101, 30.0)
    s = accuracy.snr_bin_stats(resid, snr, [15, 25, np.inf], bound=np.full(101, 2.0))
    np.testing.assert_array_equal(s["n"], [0, 101])
    np.testing.assert_allclose([s["median"][1], s["p16"][1], s["p84"][1]], [0.0, -34.0, 34.0])
    np.testing.assert_allclose(s["std"][1], np.std(resid, ddof=1))
    assert s["median_bound"][1] == 2.0 and np.isnan(s["median"][0])
