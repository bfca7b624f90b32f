"""The catalogue's data model, generated from the code: ``docs/catalogue.md``
(``gaiacnn datamodel -o docs/catalogue.md``; tests/test_datamodel.py fails when the file
and the code differ).  Every column with its type, unit, missing-value convention and
meaning, the flag digits, the formula of ``sigma_*``, the recommended cut, the header's
keywords, how to read the catalogue, and its limitations, each with the figure of the
workflow that shows it."""

from __future__ import annotations

from collections.abc import Sequence

from gaiacnn import catalogue, flags, hats
from gaiacnn.constants import label_unit

#: The labels of the default configuration (model.labels: the training file's).
DEFAULT_LABELS = ("teff", "logg", "m_h", "alpha_m", "fe_h")

#: FITS column format -> the type a reader gets.
_TYPES = {"K": "int64", "L": "bool", "E": "float32", "A": "string"}

#: Columns that only some runs write: column -> when.
CONDITIONAL = {
    "ra": "where the arrays files carry astrometry/ra, dec",
    "dec": "where the arrays files carry astrometry/ra, dec",
    "parallax_withheld": "with model.phot_input: intrinsic_withheld, the default",
}
#: When the catalogue has the e_input_<label> columns.
INPUT_NOISE_CONDITION = "with uncertainty.input_noise, the default"

#: When the catalogue has the label error correlations.
RHO_CONDITION = (
    "with the S/N calibration (uncertainty.snr_calibration_bins > 0) and enough held-out stars"
)

#: Header keywords of the catalogue's table HDU and what they hold.
HEADER_KEYWORDS = (
    ("ORIGIN", "gaiacnn"),
    ("REFERENC", "the method: Guiglion et al. 2024, A&A 682, A9"),
    ("CONFHASH", "hash of the resolved workflow configuration"),
    ("GCNNVER", "version of gaiacnn that made the catalogue"),
    ("COMMIT", "its git commit (+dirty with uncommitted changes)"),
    ("DATE", "UTC date of the aggregation (SOURCE_DATE_EPOCH where set)"),
    ("SHATRAIN", "SHA-256 of the training arrays file (empty in a run from a bundle)"),
    ("SHAOBSRV", "SHA-256 of the observed arrays file"),
    ("NMEMBERS, MEMBERS", "the ensemble members combined"),
    ("LABELS", "the labels, in the order of the flag's first digits"),
    ("BRANCHES, XPINPUT", "the model's inputs (rvs, phot, xp) and the XP form"),
    ("TSNESPEC", "the spectra the t-SNE maps embed (flag digit t-SNE)"),
    ("SNRCALIB, SIGFORM", "the labels whose sigma_ is calibrated, and how (below)"),
    ("INNOISE", "the input noise in e_input_* (parallax, xp), where the catalogue has them"),
    ("FLAGDIGS", "the flag's digits, in order"),
    ("TCOMMn", "the description of column n (this page's 'meaning')"),
)

#: Limitations of the catalogue, each with the figures of the workflow that show it.
LIMITATIONS = (
    (
        "The training domain",
        "The labels are learnt from the training sample's stars (FGK giants and dwarfs "
        "with APOGEE labels, Sect. 2); outside its label limits (Table 1) they are "
        "extrapolations, and spectra unlike any training spectrum are not training-like "
        "in t-SNE. Use `recommended`; the stars it removes are shown in",
        ["fig18_outside_limits", "fig19_outside_residuals", "figA2_tsne_labels"],
    ),
    (
        "Giants against dwarfs",
        "Hot dwarfs, cool dwarfs and cool giants outside the limits carry biases of their "
        "own (Sect. 5.3); where the training sample holds few stars of a kind (its Kiel "
        "diagram shows how many), their labels are less precise at the same S/N",
        ["fig19_outside_residuals", "fig07_residuals", "fig04_training_kiel"],
    ),
    (
        "Extinction, distance and parallaxes beyond the training sample's",
        "An observed star farther, more reddened or with a worse parallax than the "
        "training stars feeds the photometry branch inputs it never learnt; flag digit 9 "
        "(inputs) and `input_distance` mark it, and sigma_ grows with that distance where "
        "calibration stars reach (docs/shift.md)",
        ["input_distance_residuals", "fig16_precision_snr"],
    ),
    (
        "Unresolved binaries",
        "A spectrum of two stars is fit as one; such stars often have a large Gaia "
        "radial-velocity uncertainty (Appendix C), where the residuals grow",
        ["figC1_rv_error"],
    ),
)


def columns(labels: Sequence[str] = DEFAULT_LABELS) -> list[str]:
    """The catalogue's columns, in the order they are written (the optional ones included:
    :data:`CONDITIONAL`)."""
    from gaiacnn.ensemble import correlation_column, correlation_pairs

    per_label = [c for x in labels for c in (x, f"e_{x}", f"e_input_{x}", f"sigma_{x}")]
    rho = [correlation_column(p) for p in correlation_pairs(labels)]
    return [
        "source_id", "in_training", "ra", "dec", *flags.INPUT_SPACE_COLUMNS, "rvs_snr",
        "input_distance", "parallax_withheld", *per_label, *rho, "flag_boundary",
        "recommended",
    ]  # fmt: skip


def _type(name: str) -> str:
    if name == "source_id":
        return "int64"
    if name in ("in_training", "parallax_withheld", "recommended"):
        return "bool"
    if name == "flag_boundary":
        return "string (one character per digit)"
    return "float32"


def render(labels: Sequence[str] = DEFAULT_LABELS) -> str:
    """``docs/catalogue.md``, for the catalogue of ``labels``."""
    digits = flags.digit_order(labels)
    lines = [
        "# The catalogue: data model",
        "",
        "<!-- Generated by `gaiacnn datamodel -o docs/catalogue.md` from gaiacnn.catalogue,",
        "gaiacnn.flags and gaiacnn.datamodel; tests/test_datamodel.py fails when they",
        "differ. Edit the code, not this file. -->",
        "",
        "`results/catalogue/catalogue.fits` (table HDU `CATALOGUE`) holds one row per star: "
        "the training sample, then the observed sample, each in the order of its arrays "
        "file. `catalogue.parquet` (config `catalogue.parquet`, on by default) holds the "
        "same rows and columns, written by row groups, each field's unit and description "
        "in its metadata and the FITS header in the schema's (`gaiacnn.fits_header`); "
        "`catalogue.csv` (`catalogue.csv`, opt-in) the same rows as text; `hats/` "
        "(`catalogue.hats`, opt-in) a HATS-partitioned copy for lsdb, made streaming "
        f"(partitions of at most {hats.PARTITION_ROWS:,} rows, a `_healpix_29` column "
        "added, no margin cache: make it the left catalogue of a cross-match). Shown here "
        "for the default labels "
        f"({', '.join(labels)}); another `model.labels` gives its own label columns, and "
        "flag digits, in its order (header `LABELS`, `FLAGDIGS`).",
        "",
        "## Columns",
        "",
        "| column | type | unit | missing | meaning |",
        "|---|---|---|---|---|",
    ]
    for name in columns(labels):
        unit, description, missing = catalogue.column_doc(name)
        if name in CONDITIONAL:
            description += f"; only {CONDITIONAL[name]}"
        elif name.startswith("e_input_"):
            description += f"; only {INPUT_NOISE_CONDITION}"
        elif name.startswith("rho_"):
            description += f"; only {RHO_CONDITION}"
        lines.append(f"| `{name}` | {_type(name)} | {unit or '-'} | {missing} | {description} |")
    lines += [
        "",
        "Units: FITS `TUNITn` where FITS has the unit (K, deg, mag, mas); dex, which neither "
        "FITS nor VOUnit knows, is in the description (`TCOMMn`) instead, as are the "
        "dimensionless columns.",
        "",
        "## The flag: `flag_boundary`",
        "",
        "One character per digit: `0` inside, `1` outside the training sample, `-` not "
        "available (the data lack that input, for every star). Digits 1 to "
        f"{len(digits) - 1} are the paper's (Sect. 5.2), digit {len(digits)} is not in it.",
        "",
        "| digit | name | `1` means |",
        "|---:|---|---|",
    ]
    for line, name in zip(flags.describe(labels), digits, strict=True):
        number, what = line.split(": ", 1)
        lines.append(f"| {number.split()[1]} | {name} | {what} |")
    lines += [
        "",
        "## The recommended cut: `recommended`",
        "",
        "`recommended` is T where no digit of `flag_boundary` is `1`: the star's labels, G, "
        "parallax and inputs lie inside the training sample's, and its spectrum is "
        "training-like in every t-SNE map. A digit `-` (not in the data) does not count "
        "against a star. This is the paper's selection (Sect. 5.2) with the inputs digit "
        "added; training stars have the t-SNE and inputs digits `0` by definition.",
        "",
        "## Uncertainties",
        "",
        "`e_<label>` is the spread of the ensemble members; `e_input_<label>` the spread "
        "of the label when the star's own parallax (and, if `INNOISE` says so, XP "
        "coefficients) is drawn from its errors through every member "
        "(`uncertainty.input_noise`, not in the paper: the members all read the same noisy "
        "inputs, so `e_*` cannot see that noise; "
        "docs/shift.md); `sigma_<label>` the total "
        f"uncertainty, in {label_unit('teff')} for teff and dex otherwise:",
        "",
        "```",
        *catalogue.sigma_formula(True, "dispersion", withheld=True, noise=True),
        "```",
        "",
        "Without the calibration (`uncertainty.snr_calibration_bins: 0`, the paper; header "
        "`SIGFORM` `paper`):",
        "",
        "```",
        *catalogue.sigma_formula(False),
        "```",
        "",
        "`sigma_*` >= `e_*` for every star. The fits (D, k(S/N), k_in, W) are in "
        "`results/ensemble/uncertainty_model.json` and in a bundle's "
        "`uncertainty_model.json`, with each S/N bin's 68 % confidence interval on its "
        "factor (`factor_interval`, distribution-free). A bin's coverage is known only as "
        "well as its factor: where the reference labels' errors rival the CNN's (bright "
        "stars against APOGEE's Teff errors) the interval is wide, and on the demo the "
        "coverage of such bins lands 5–8 points from 68 % in some labels (docs/shift.md: "
        "coverage per S/N bin).",
        "",
        "`rho_<a>__<b>` is the correlation of the errors of labels a and b at the star's "
        "S/N (not in the paper): per equal-count S/N bin of the held-out stars that "
        "calibrate `sigma_*` (training stars through the members that held them out, "
        "observed stars with reference labels), cov(r_a, r_b) / sqrt((var r_a - <err_a²>)"
        "(var r_b - <err_b²>)) with r = CNN - reference and err the reference labels' "
        "errors (taken as independent between labels), residuals beyond 5 robust standard "
        "deviations left out; interpolated linearly in log S/N between the bins "
        "(`label_correlation` in `uncertainty_model.json`). The covariance of two labels "
        "is then rho_a_b · sigma_a · sigma_b. `benchmarks/label_correlations.py` checks it "
        "against the truth: on the default demo every pair and S/N bin is within ±0.1; "
        "on the shifted demo's far stars (docs/shift.md) 14 of 16 are, Teff–[M/H] below "
        "S/N 35 being under-estimated by 0.1–0.2: the errors of stars unlike the "
        "calibration stars move together more, whether or not their inputs lie outside "
        "the training stars' (`input_distance`), and rho, fitted against S/N, cannot "
        "know it.",
        "",
        "## Header",
        "",
        "| keyword | holds |",
        "|---|---|",
        *(f"| `{k}` | {v} |" for k, v in HEADER_KEYWORDS),
        "",
        "## Reading it",
        "",
        "```python",
        "from astropy.table import Table",
        'cat = Table.read("results/catalogue/catalogue.fits")',
        'good = cat[cat["recommended"]]',
        "",
        "import pandas as pd",
        'df = Table.read("results/catalogue/catalogue.fits").to_pandas()',
        'df = pd.read_parquet("results/catalogue/catalogue.parquet")',
        'df = pd.read_csv("results/catalogue/catalogue.csv", dtype={"flag_boundary": str})',
        "",
        "import lsdb  # catalogue.hats: true; a Gaia DR3 HATS catalogue, local or remote",
        'ours = lsdb.open_catalog("results/catalogue/hats")',
        'gaia = lsdb.open_catalog("path/to/gaia_dr3/gaia")',
        "matched = ours.crossmatch(gaia, radius_arcsec=1.0, n_neighbors=1).compute()",
        "```",
        "",
        "## Limitations",
        "",
    ]
    for title, text, figures in LIMITATIONS:
        shown = ", ".join(f"`results/figures/{f}.png`" for f in figures)
        lines.append(f"- **{title}.** {text}: {shown}.")
    lines.append("")
    return "\n".join(lines)
