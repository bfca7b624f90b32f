"""The figures on every input shape of the arrays files (SPEC stage 3) and on label sets
without [M/H]: ``render_all`` finishes, draws each figure the shape allows, and lists every
other one as skipped with a reason that names the missing input; the boundary flag's ``-``
digits count as "not available", not as outside; and the report lists each figure not
drawn (the ``not_drawn/`` files, :func:`~gaiacnn.figures.render.report_labels`, the workflow
description)."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from figure_data import (
    LABELS_NO_M_H,
    check_image,
    check_rendered,
    make_products,
    render_recorded,
)

from gaiacnn import model
from gaiacnn.figures import render, spectra
from gaiacnn.figures.context import Context, Skip, missing_input
from gaiacnn.figures.render import NOT_DRAWN_DIR, registry, render_all, report_labels

REPO = Path(__file__).resolve().parents[1]

#: Drawn in every shape: they need only the labels, the catalogue and the t-SNE maps.
ALWAYS = {
    "fig04_training_kiel",
    "fig05_correlations",
    "fig07_residuals",
    "fig08_training_uncertainties",
    "fig11_observed_kiel_snr",
    "fig13_observed_uncertainties",
    "fig17_tsne_p30",
    "fig17_tsne_p50",
    "figA1_tsne_perplexities",
    "fig18_outside_limits",
    "demo_truth_residuals_snr",
    "demo_sigma_coverage",
}
#: Drawn in every shape from the ensemble member alone; they show no stars (n_stars 0).
MODEL_ONLY = {"fig06_architecture"}

#: name -> (make_products arguments, figures drawn besides ALWAYS, {function skipped: words
#: its reason must hold}, what the t-SNE maps embed in their captions).
CASES: dict[str, tuple[dict, set[str], dict[str, tuple[str, ...]], str]] = {
    "a_full": (
        {"shape": "full"},
        {
            "fig01_snr",
            "fig02_example_spectra",
            "fig03_g_mag",
            "fig09_rvs_gradients",
            "fig10_xp_gradients",
            "fig12_mean_spectra_sequences",
            "fig14_alpha_m_h_kiel_bins",
            "fig15_metal_poor",
            "fig16_precision_snr",
        },
        {},
        "of the RVS spectra",
    ),
    "b_xp_sampled": (
        {"shape": "xp_sampled"},
        {"fig03_g_mag", "fig10_xp_gradients", "fig14_alpha_m_h_kiel_bins"},
        {
            "snr_distribution": ("rvs/snr", "no RVS S/N"),
            "example_spectra": ("rvs/flux", "no RVS spectra"),
            "rvs_gradients": ("rvs/flux", "no RVS spectra"),
            "mean_spectra_sequences": ("rvs/flux", "no RVS spectra"),
            "metal_poor": ("rvs/snr",),
            "precision_vs_snr": ("rvs/snr",),
        },
        "of the XP spectra (sampled flux)",
    ),
    "c_xp_coefficients_teff_logg": (
        {"shape": "xp_coefficients", "labels": ["teff", "logg"]},
        {"fig03_g_mag", "fig10_xp_gradients"},
        {
            "snr_distribution": ("rvs/snr",),
            "example_spectra": ("rvs/flux",),
            "rvs_gradients": ("rvs/flux",),
            "mean_spectra_sequences": ("rvs/flux",),
            "precision_vs_snr": ("rvs/snr",),
            "metal_poor": ("m_h",),
            "alpha_vs_metallicity_kiel_bins": ("alpha_m",),
        },
        "of the XP spectra (BP/RP coefficients)",
    ),
    "d_rvs_only_no_m_h": (
        {"shape": "rvs_only", "labels": LABELS_NO_M_H, "drop_absent_columns": True},
        {
            "fig01_snr",
            "fig02_example_spectra",
            "fig09_rvs_gradients",
            "fig12_mean_spectra_sequences",
            "fig14_alpha_m_h_kiel_bins",
            "fig16_precision_snr",
        },
        {
            "g_distribution": ("phot/g",),
            "xp_gradients": ("xp/", "no XP spectra"),
        },
        "of the RVS spectra",
    ),
}
#: Figure functions skipped in every case: no external tables, no ra/dec in the test data.
EXTERNAL = {"gsp_spec_reference", "gsp_spec", "gsp_phot", "asteroseismic", "galah"}
EXTERNAL |= {"open_clusters", "alpha_vs_metallicity_galactic"}
#: ... and Fig. 19: make_products gives the stars outside the training limits no reference
#: labels (NaN), so none lies in a Kiel box (tests/test_figures_outside.py constructs some).
EXTERNAL |= {"outside_residuals"}
#: ... and Fig. C.1: make_products writes no rvs/radial_velocity_error (tests/test_rv_error.py
#: adds one to draw it).
EXTERNAL |= {"rv_error_residuals"}
#: ... and the input-distance residuals: make_products writes no input_distance column
#: (tests/test_workflow.py::test_figures_are_rendered_and_reported draws it from a run).
EXTERNAL |= {"input_distance_residuals"}


@pytest.fixture(scope="module", params=list(CASES))
def case(request, tmp_path_factory):
    """One case of :data:`CASES`, its products made and every figure rendered."""
    name = request.param
    kwargs = CASES[name][0]
    root = tmp_path_factory.mktemp(name)
    inputs = make_products(root / "products", **kwargs)
    out = root / "figures"
    index, sizes = render_recorded(Context(inputs, {}), out, registry())
    return name, inputs, out, index, sizes


def test_render_all_draws_what_the_shape_allows_and_says_why_not_the_rest(case):
    name, _, out, index, sizes = case
    _, drawn_too, skipped, _ = CASES[name]
    drawn = {f["name"] for f in index["figures"]}
    want = ALWAYS | MODEL_ONLY | drawn_too
    assert want <= drawn, sorted(want - drawn)
    reasons = {s["function"]: s["reason"] for s in index["skipped"]}
    # every function drew or said why not, and only those expected (or external) did not
    assert set(reasons) <= set(skipped) | EXTERNAL, sorted(set(reasons) - EXTERNAL)
    for function, words in skipped.items():
        assert function in reasons, f"{function} drew in {name}"
        for word in words:
            assert word in reasons[function], (function, reasons[function])
    stars = [f for f in index["figures"] if f["name"] not in MODEL_ONLY]
    check_rendered(out, {"figures": stars}, sizes)  # each drawn figure: a real image of its size
    for entry in index["figures"]:
        if entry["name"] in MODEL_ONLY:
            check_image(out / f"{entry['name']}.png", sizes[entry["name"]])
            assert entry["n_stars"] == 0 and entry["caption"]
    assert render.read_index(out) == index


def test_a_figure_not_drawn_leaves_its_reason_for_the_report(case):
    _, _, out, index, _ = case
    files = sorted(p.name for p in (out / NOT_DRAWN_DIR).iterdir())
    assert files == sorted(f"{s['function']}.txt" for s in index["skipped"])
    for s in index["skipped"]:
        text = (out / NOT_DRAWN_DIR / f"{s['function']}.txt").read_text()
        assert text == f"{s['function']}: not drawn: {s['reason']}\n"
        labels = report_labels(out, s["function"])
        assert labels["shows"].startswith("not drawn: ") and labels["stars"] == ""
    first = index["figures"][0]
    assert report_labels(out, first["name"])["stars"] == first["n_stars"]


def test_tsne_captions_and_titles_name_the_spectra_embedded(case):
    name, _, _, index, _ = case
    what = CASES[name][3]
    captions = {f["name"]: f["caption"] for f in index["figures"]}
    for fig in ("fig17_tsne_p30", "fig17_tsne_p50", "figA1_tsne_perplexities"):
        assert what.split(" (")[0] in captions[fig], captions[fig]
    other = "of the XP spectra" if "RVS" in what else "of the RVS spectra"
    assert other not in captions["fig17_tsne_p30"]


def test_flag_digits_not_available_count_as_inside_and_are_said(case):
    name, inputs, _, index, _ = case
    ctx = Context(inputs, {})
    flags = ctx.table["flag_boundary"].astype(str).to_numpy()
    observed = ~ctx.in_training
    no_one = np.array(["1" not in f for f in flags])
    np.testing.assert_array_equal(ctx.inside, observed & no_one)
    np.testing.assert_array_equal(ctx.outside, observed & ~no_one)
    dashes = {"a_full": [], "b_xp_sampled": ["parallax", "inputs"]}
    dashes |= {
        "c_xp_coefficients_teff_logg": [],
        "d_rvs_only_no_m_h": ["G", "parallax", "inputs"],
    }
    assert ctx.unavailable_digits == dashes[name]
    fig18 = next(f for f in index["figures"] if f["name"] == "fig18_outside_limits")
    assert fig18["n_stars"] == int(ctx.outside.sum())
    if dashes[name]:
        assert any("-" in f for f in flags)
        assert "'-' (not available" in fig18["caption"]
        assert ", ".join(dashes[name]) + " digit" in fig18["caption"]
    else:
        assert "not available" not in fig18["caption"]


def test_fe_h_stands_in_for_m_h_and_says_so(case):
    name, _, _, index, _ = case
    captions = {f["name"]: f["caption"] for f in index["figures"]}
    note = "[Fe/H] stands in for [M/H]"
    if name == "d_rvs_only_no_m_h":
        for fig in ("fig02_example_spectra", "fig04_training_kiel", "fig09_rvs_gradients",
                    "fig12_mean_spectra_sequences", "fig14_alpha_m_h_kiel_bins",
                    "fig18_outside_limits"):  # fmt: skip
            assert note in captions[fig], fig
    else:
        assert not any(note in c for c in captions.values())
    if name == "c_xp_coefficients_teff_logg":  # no metallicity at all: density, any [M/H]
        assert "no [M/H] or [Fe/H] label" in captions["fig04_training_kiel"]
        assert "any metallicity" in captions["fig10_xp_gradients"]


# ------------------------------------------------------------------------- single figures
@pytest.fixture(scope="module")
def full(tmp_path_factory):
    return make_products(tmp_path_factory.mktemp("full"), n=300, member=False)


def test_rvs_gradients_skip_for_a_member_without_the_rvs_branch(full, tmp_path):
    rows = np.arange(int(Context(full, {}).in_training.sum()))
    scalers = model.fit_scalers(full.training, rows, ["teff", "logg"], ["phot", "xp"])
    net = model.model_for(scalers, {"xp_dense": 8})
    member = tmp_path / "split0_seed0"
    model._save_member(member, net, scalers, {"loss": [1.0]})
    ctx = Context(dataclasses.replace(full, members=[member]), {})
    with pytest.raises(Skip, match="split0_seed0 was trained without the rvs branch"):
        list(spectra.rvs_gradients(ctx))


def test_a_missing_input_is_named_in_the_reason():
    assert str(missing_input("rvs/flux")) == (
        "no rvs/flux in the arrays: the survey has no RVS spectra"
    )
    assert "no phot/g, phot/bp, phot/rp in the arrays" in str(missing_input("phot", "why"))
    assert str(missing_input("astrometry/parallax", "why")).endswith("parallaxes (why)")


def test_report_labels_of_an_unrendered_or_odd_entry(tmp_path):
    assert report_labels(tmp_path, "fig01_snr") == {"figure": "fig01_snr", "shows": "",
                                                    "stars": ""}  # fmt: skip

    def skips(ctx):
        raise Skip("no {braces} here")  # Snakemake would read {braces} as a wildcard
        yield  # pragma: no cover

    index = render_all(None, tmp_path / "f", formats=("png",), functions=[skips])
    assert index["figures"] == []
    assert report_labels(tmp_path / "f", "skips")["shows"] == "not drawn: no (braces) here"


# ------------------------------------------------------------------------- the report
def _description(files) -> str:
    """workflow/report/workflow.rst as Snakemake renders it (Jinja, then docutils)."""
    from docutils.core import publish_parts
    from jinja2 import Environment

    text = (REPO / "workflow" / "report" / "workflow.rst").read_text(encoding="utf-8")
    env = Environment(trim_blocks=True, lstrip_blocks=True)  # as snakemake.report
    rst = env.from_string(text).render(snakemake=None, categories={}, files=files)
    with warnings.catch_warnings():  # docutils 0.22 deprecates writer_name (Snakemake's call)
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        parts = publish_parts(rst, writer_name="html", settings_overrides={"report_level": 5})
    return parts["html_body"]


def test_the_workflow_description_lists_each_figure_not_drawn():
    @dataclasses.dataclass
    class Record:  # the part of snakemake.report.FileRecord the description reads
        labels: dict | None

    shown = {"figure": "fig01_snr", "shows": "RVS S/N distribution", "stars": 3}
    files = [
        Record(shown),
        Record(None),
        Record({"figure": "rvs_gradients", "stars": "",
                "shows": "not drawn: no rvs/flux in the arrays: no sigma_ *x* `y` a|b"}),
        Record({"figure": "galah", "stars": "", "shows": "not drawn: no GALAH table"}),
    ]  # fmt: skip
    html = _description(files)
    assert "Figures not drawn" in html and "2 figure functions" in html
    assert html.index("galah") < html.index("rvs_gradients")  # sorted, one item each
    assert "no rvs/flux in the arrays: no sigma_ *x* `y` a|b</li>" in html  # text kept
    assert "fig01_snr" not in html
    assert "Figures not drawn" not in _description(files[:2])


SNAKEMAKE = Path(sys.executable).parent / "snakemake"


@pytest.mark.slow
@pytest.mark.skipif(not SNAKEMAKE.exists(), reason="no snakemake beside the Python")
def test_the_snakemake_report_has_one_row_per_figure_not_drawn(tmp_path):
    """A rule registered as workflow/rules/figures.smk registers results/figures, with
    ``not_drawn/{name}.txt`` beside ``{name}.png`` and :func:`report_labels`: the report
    holds each figure function not drawn, with its reason, and lists them on its first
    page."""
    for name in ("workflow.rst", "figure.rst"):
        shutil.copy(REPO / "workflow" / "report" / name, tmp_path / name)
    (tmp_path / "Snakefile").write_text(
        """report: "workflow.rst"


def labels(wildcards, output):
    from gaiacnn.figures.render import report_labels

    return report_labels(output[0], wildcards.name)


rule figures:
    output:
        report(
            directory("results/figures"),
            patterns=["{name}.png", "not_drawn/{name}.txt"],
            caption="figure.rst",
            category="Validation figures",
            labels=labels,
        ),
    run:
        from gaiacnn.figures import render, style
        from gaiacnn.figures.context import Skip

        def line(ctx):
            fig, ax = style.new_figure()
            ax[0, 0].plot([0, 1], [0, 1])
            yield render.Rendered("fig01_line", fig, "a line", 2)

        def rvs_gradients(ctx):
            raise Skip("no rvs/flux in the arrays: the survey has no RVS spectra")
            yield

        render.render_all(None, output[0], formats=["png"], functions=[line, rvs_gradients])
""",
        encoding="utf-8",
    )
    cmd = [str(SNAKEMAKE), "--cores", "1", "--quiet"]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    proc = subprocess.run([*cmd[:1], "--report", "report.html"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    html = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "Figures not drawn" in html
    assert "not drawn: no rvs/flux in the arrays: the survey has no RVS spectra" in html
    assert '"figure": "rvs_gradients"' in html and '"figure": "fig01_line"' in html


def test_every_function_named_in_the_cases_is_registered():
    names = {f.__name__ for f in registry()}
    for _, _, skipped, _ in CASES.values():
        assert set(skipped) <= names
    assert EXTERNAL <= names


def test_fig18_insets_are_the_mean_spectra_of_the_hot_stars_and_cool_giants(case):
    """Fig. 18's insets (Sect. 5.3): where the observed arrays have RVS spectra, the caption
    counts the stars of each inset region among those drawn (outside the limits, with a
    metallicity to bin by); without them it says there are no insets."""
    from gaiacnn.figures.samples import FIG18_INSETS, kiel_box_index
    from gaiacnn.figures.style import number

    _, inputs, _, index, _ = case
    ctx = Context(inputs, {})
    caption = next(f for f in index["figures"] if f["name"] == "fig18_outside_limits")["caption"]
    if not ctx.has("rvs/flux", sample="observed"):
        assert "no insets: the observed arrays have no rvs/flux" in caption
        return
    drawn = ctx.outside.copy()
    metal = ctx.metallicity()
    if metal is not None:
        drawn &= np.isfinite(ctx.column(metal))
    teff, logg = ctx.column("teff"), ctx.column("logg")
    for box, where in FIG18_INSETS:
        n = int((drawn & (kiel_box_index(teff, logg, (box,)) == 0)).sum())
        assert f"{box.name} ({box.text()}; {where}: {number(n)} stars in all)" in caption
    assert "insets: the mean normalised RVS spectrum" in caption
