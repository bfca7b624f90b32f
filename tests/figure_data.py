"""A small, complete set of the workflow's products for the figure tests, made from the
demo physics (true labels, realistic spectra) without running the workflow: arrays files,
a catalogue whose CNN labels are the truth plus noise, an uncertainty model, t-SNE maps,
one untrained ensemble member (random weights: real gradients, meaningless values) and the
truth file.

``shape`` picks which inputs the arrays files hold (:data:`SHAPES`, the four input shapes
the workflow runs end to end), ``labels`` any subset of the labels; the catalogue, its
``flag_boundary`` (``-`` for a digit whose input is absent), the member's branches and the
t-SNE maps' ``spectra`` attribute follow.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
from matplotlib.image import imread

from gaiacnn import catalogue, ensemble, flags, layout, model
from gaiacnn.constants import rvs_wavelength_nm
from gaiacnn.demo.physics import OOD_POPULATIONS, POPULATION_CODES, simulate_stars
from gaiacnn.figures import style
from gaiacnn.figures.context import Context, Inputs
from gaiacnn.figures.render import render_all
from gaiacnn.spectra import fill_nan_pixels

LABELS = ["teff", "logg", "m_h", "alpha_m", "fe_h"]
NOISE = {"teff": 60.0, "logg": 0.1, "m_h": 0.07, "alpha_m": 0.03, "fe_h": 0.07}
#: A label set without [M/H] (its [Fe/H] stands in where a figure needs a metallicity).
LABELS_NO_M_H = ["teff", "logg", "fe_h", "alpha_m"]

#: The input shapes of the arrays files (SPEC stage 3): the inputs each holds.
#: full (a): everything; xp_sampled (b): XP sampled flux + photometry, no RVS, no parallax;
#: xp_coefficients (c): XP coefficients + photometry + parallax, no RVS; rvs_only (d): RVS
#: spectra and their S/N alone.
SHAPES: dict[str, frozenset[str]] = {
    "full": frozenset({"rvs", "snr", "xp_coefficients", "phot", "parallax"}),
    "xp_sampled": frozenset({"xp_sampled", "phot"}),
    "xp_coefficients": frozenset({"xp_coefficients", "phot", "parallax"}),
    "rvs_only": frozenset({"rvs", "snr"}),
}
#: The model branches of each shape's ensemble member.
BRANCHES = {
    "full": ["rvs", "phot", "xp"],
    "xp_sampled": ["phot", "xp"],
    "xp_coefficients": ["phot", "xp"],
    "rvs_only": ["rvs"],
}
#: The ``spectra`` attribute of each shape's t-SNE maps (None: no attribute, an RVS map).
TSNE_SPECTRA = {
    "full": None,
    "xp_sampled": "xp/sampled_flux",
    "xp_coefficients": "xp/coefficients",
    "rvs_only": "rvs/flux",
}
#: Wavelengths [nm] of the synthetic XP sampled flux (GaiaXPy's range, 10 nm steps).
XP_SAMPLED_NM = np.arange(336.0, 1021.0, 10.0)


def xp_sampled_flux(truth: dict, g_mag: np.ndarray, wl: np.ndarray = XP_SAMPLED_NM):
    """Synthetic absolute XP sampled flux [W m-2 nm-1] (n, K): a black body at T_eff with
    a few metallicity-dependent absorption features, scaled by the G magnitude into
    ~1e-18..1e-13 (the range of GaiaXPy's calibrated spectra)."""
    lam = wl[None, :] * 1e-9
    with np.errstate(over="ignore"):
        body = 1.0 / (lam**5 * np.expm1(1.4388e-2 / (lam * truth["teff"][:, None])))
    body /= body.mean(axis=1, keepdims=True)
    metals = 10.0 ** np.clip(truth["m_h"], -3, 1)[:, None]
    dips = sum(
        np.exp(-0.5 * ((wl[None, :] - c) / w) ** 2)
        for c, w in ((393.0, 8.0), (517.0, 12.0), (850.0, 15.0))
    )
    shape = body * (1.0 - 0.15 * np.tanh(metals) * dips)
    return (shape * 3e-18 * 10.0 ** (-0.4 * (g_mag[:, None] - 15.0))).astype(np.float32)


def make_products(
    out: Path,
    n: int = 600,
    seed: int = 3,
    member: bool = True,
    *,
    shape: str = "full",
    labels: Sequence[str] = LABELS,
    drop_absent_columns: bool = False,
) -> Inputs:
    """Write the products under ``out`` and return their :class:`Inputs`.

    ``shape``: a key of :data:`SHAPES`; ``labels``: the labels of the catalogue, the
    reference labels and the member; ``drop_absent_columns``: leave the catalogue columns of
    inputs the shape lacks (``rvs_snr``, ``phot_g_mean_mag``, ``parallax``) out, instead of
    writing them NaN."""
    have = SHAPES[shape]
    labels = list(labels)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    truth, obs = simulate_stars(rng, n)
    wl = rvs_wavelength_nm()
    flux, _ = fill_nan_pixels(obs["flux"], wl)
    ood = np.isin(truth["population"], [POPULATION_CODES[p] for p in OOD_POPULATIONS])
    is_tr = ~ood & (obs["snr"] >= 30) & (rng.random(n) < 0.6)
    sid = np.arange(n, dtype=np.int64) + 4 * 10**15
    inputs = {
        "rvs": {"rvs/flux": ((wl.size,), np.float32, {"wavelength_nm": wl})},
        "snr": {"rvs/snr": ((), np.float32, {})},
        "xp_coefficients": {
            "xp/bp_coefficients": ((55,), np.float32, {}),
            "xp/rp_coefficients": ((55,), np.float32, {}),
        },
        "xp_sampled": {
            "xp/sampled_flux": (
                (XP_SAMPLED_NM.size,),
                np.float32,
                {"wavelength_nm": XP_SAMPLED_NM, "flux_kind": "absolute"},
            )
        },
        "phot": {k: ((), np.float32, {}) for k in layout.PHOT_DATASETS},
        "parallax": {"astrometry/parallax": ((), np.float32, {})},
    }
    cols = {"source_id": ((), np.int64, {})}
    for key in ("rvs", "snr", "xp_coefficients", "xp_sampled", "phot", "parallax"):
        if key in have:
            cols |= inputs[key]
    cols |= {layout.label_dataset(x): ((), np.float32, {}) for x in labels}
    values = {
        "source_id": sid,
        "rvs/flux": flux,
        "rvs/snr": obs["snr"],
        "xp/bp_coefficients": obs["bp_coefficients"],
        "xp/rp_coefficients": obs["rp_coefficients"],
        "phot/g": obs["phot_g_mean_mag"],
        "phot/bp": obs["phot_bp_mean_mag"],
        "phot/rp": obs["phot_rp_mean_mag"],
        "astrometry/parallax": obs["parallax"],
    }
    if "xp_sampled" in have:
        values["xp/sampled_flux"] = xp_sampled_flux(truth, obs["phot_g_mean_mag"])
    paths = {}
    for sample, mask in (("training", is_tr), ("observed", ~is_tr)):
        paths[sample] = out / f"{sample}.h5"
        with layout.ArraysWriter(paths[sample], int(mask.sum()), cols) as w:
            row = {k: values[k][mask] for k in cols if k in values}
            for x in labels:  # reference labels: the truth plus a little noise; NaN for OOD
                ref = truth[x] + rng.normal(0, NOISE[x] / 2, n)
                row[layout.label_dataset(x)] = np.where(ood, np.nan, ref)[mask]
            w.append(row)
    order = np.r_[np.flatnonzero(is_tr), np.flatnonzero(~is_tr)]
    nan = np.full(n, np.nan, np.float32)
    table = pd.DataFrame(
        {
            "source_id": sid[order],
            "in_training": is_tr[order],
            "phot_g_mean_mag": obs["phot_g_mean_mag"][order] if "phot" in have else nan,
            "parallax": obs["parallax"][order] if "parallax" in have else nan,
            "rvs_snr": obs["snr"][order] if "snr" in have else nan,
        }
    )
    if drop_absent_columns:
        absent = [("phot_g_mean_mag", "phot"), ("parallax", "parallax"), ("rvs_snr", "snr")]
        table = table.drop(columns=[c for c, key in absent if key not in have])
    for x in labels:
        e = NOISE[x] * (0.3 + 10 / obs["snr"][order])
        table[x] = truth[x][order] + rng.normal(0, 1, n) * e
        table[f"e_{x}"] = 0.3 * e
        table[f"sigma_{x}"] = e
    like = ~ood[order] | (rng.random(n) < 0.02)
    # flag_boundary: labels, G, parallax, t-SNE, inputs; "-" for G / parallax / inputs where
    # the shape lacks them
    digits = np.full((n, len(labels) + 4), "0")
    digits[~(is_tr[order] | like), -2] = "1"
    hot = np.asarray(table["teff"] if "teff" in labels else truth["teff"][order]) > 7000
    digits[hot] = "0"
    digits[hot, 0] = digits[hot, -2] = "1"
    digits[:, len(labels)] = "0" if "phot" in have else "-"
    digits[:, len(labels) + 1] = "0" if "parallax" in have else "-"
    digits[:, -1] = "0" if {"phot", "parallax"} <= set(have) else "-"
    table["flag_boundary"] = ["".join(d) for d in digits]
    table.attrs.update(
        labels=labels,
        members=["split0_seed0"],
        config_hash="test",
        flag_digits=flags.digit_order(labels),
    )
    paths["catalogue"] = out / "catalogue.fits"
    catalogue.write(table, paths["catalogue"])
    fits_ = []
    for x in labels:
        d = (table[x] - truth[x][order]).to_numpy()[is_tr[order]]
        c = float(np.median(truth[x][is_tr]))
        fits_.append(ensemble.DispersionFit(x, [c], [float(np.std(d))], [int(is_tr.sum())],
                                            [float(np.std(d))], c, c))  # fmt: skip
    ranges = {x: truth[x][is_tr] for x in labels}
    if "phot" in have:
        ranges["phot_g_mean_mag"] = obs["phot_g_mean_mag"][is_tr]
    if "parallax" in have:
        ranges["parallax"] = obs["parallax"][is_tr]
    rng_ = ensemble.effective_range(ranges, (0.0, 1.0))
    paths["model"] = out / "uncertainty_model.json"
    ensemble.write_uncertainty_model(fits_, rng_, ["split0_seed0"], paths["model"])
    maps = []
    for p in (30, 50):
        path = out / f"tsne_p{p}.h5"
        xy = rng.normal(0, 10, (n, 2)) + np.where(ood[order], 40, 0)[:, None]
        with h5py.File(path, "w") as h5:
            h5["source_id"], h5["in_training"], h5["xy"] = sid[order], is_tr[order], xy
            h5["nn_training_distance"] = np.zeros(n)
            h5["training_like"] = ~ood[order]
            h5.attrs["perplexity"], h5.attrs["threshold"] = float(p), 1.0
            if TSNE_SPECTRA[shape] is not None:
                h5.attrs["spectra"] = TSNE_SPECTRA[shape]
        maps.append(path)
    members = []
    if member:
        rows = np.arange(int(is_tr.sum()))
        scalers = model.fit_scalers(paths["training"], rows, labels, BRANCHES[shape])
        net = model.model_for(scalers, {"conv_filters": [4, 4, 4], "rvs_dense": 16, "xp_dense": 8})
        members.append(out / "members" / "split0_seed0")
        model._save_member(members[0], net, scalers, {"loss": [1.0]})
    paths["truth"] = out / "truth.h5"
    with h5py.File(paths["truth"], "w") as h5:
        h5["source_id"] = sid
        for k in ("teff", "logg", "m_h", "alpha_m", "fe_h", "R_kpc", "z_kpc", "population"):
            h5[f"truth/{k}"] = truth[k]
        for x in labels:
            h5[f"crlb_all/{x}"] = NOISE[x] * 5 / obs["snr"]
            h5[f"crlb_rvs/{x}"] = NOISE[x] * 8 / obs["snr"]
    return Inputs(
        catalogue=paths["catalogue"],
        training=paths["training"],
        observed=paths["observed"],
        uncertainty_model=paths["model"],
        maps=maps,
        members=members,
        truth=paths["truth"],
    )


def render_recorded(
    ctx: Context,
    out: Path,
    functions: Sequence[Callable],
    texts: dict | None = None,
) -> tuple[dict, dict]:
    """Render ``functions`` as PNG into ``out``, recording each figure's size in inches
    (and, if ``texts`` is given, the texts of each of its axes) before it is saved and
    cleared; returns ``(index, sizes)``."""
    sizes: dict = {}

    def recording(fn):
        @functools.wraps(fn)
        def wrapper(c):
            for r in fn(c):
                sizes[r.name] = tuple(r.fig.get_size_inches())
                if texts is not None:
                    texts[r.name] = [[t.get_text() for t in ax.texts] for ax in r.fig.axes]
                yield r

        return wrapper

    index = render_all(ctx, out, formats=("png",), functions=[recording(f) for f in functions])
    return index, sizes


def check_image(path: Path, size_in: tuple[float, float]) -> None:
    """``path`` is a PNG of ``size_in`` (inches) at the style's dpi whose pixels are not
    all alike."""
    dpi = style.RC["savefig.dpi"]
    img = imread(path)
    assert img.shape[:2] == (round(size_in[1] * dpi), round(size_in[0] * dpi)), path
    assert float(np.std(img[..., :3])) > 0.01, f"{path} is blank"


def check_rendered(out: Path, index: dict, sizes: dict) -> None:
    """Every figure of ``index`` is a non-blank PNG of its size with a caption and stars."""
    for entry in index["figures"]:
        check_image(out / f"{entry['name']}.png", sizes[entry["name"]])
        assert entry["n_stars"] > 0 and entry["caption"], entry["name"]


# ------------------------------------------------------------ helpers of Figs. 17, A.2, 19
def write_map(
    path: Path,
    perplexity: float,
    source_id: np.ndarray,
    in_training: np.ndarray,
    training_like: np.ndarray,
    xy: np.ndarray,
    *,
    threshold: float = 1.0,
) -> Path:
    """A t-SNE map file of the given stars (positions ``xy`` (n, 2) [t-SNE units]), as
    :func:`make_products` writes them; returns ``path``."""
    n = len(source_id)
    with h5py.File(path, "w") as h5:
        h5["source_id"] = np.asarray(source_id, np.int64)
        h5["in_training"] = np.asarray(in_training, bool)
        h5["xy"] = np.asarray(xy, np.float32)
        h5["nn_training_distance"] = np.zeros(n, np.float32)
        h5["training_like"] = np.asarray(training_like, bool)
        h5.attrs["perplexity"], h5.attrs["threshold"] = float(perplexity), float(threshold)
    return path


def copy_products(inputs: Inputs, out: Path) -> Inputs:
    """The catalogue, arrays files and uncertainty model of ``inputs`` copied under ``out``
    (to be changed without touching a shared fixture); maps, members, truth as they are."""
    import dataclasses
    import shutil

    out.mkdir(parents=True, exist_ok=True)
    new = {}
    for key in ("catalogue", "training", "observed", "uncertainty_model"):
        src = Path(getattr(inputs, key))
        new[key] = Path(shutil.copy(src, out / src.name))
    return dataclasses.replace(inputs, **new)


def set_reference_labels(arrays_path: Path, source_id: np.ndarray, labels: dict) -> None:
    """Overwrite the reference labels (``labels/<name>``) of the stars ``source_id`` of one
    arrays file with ``labels`` (name -> values in the order of ``source_id``)."""
    with h5py.File(arrays_path, "r+") as h5:
        rows = pd.Index(h5["source_id"][:]).get_indexer(np.asarray(source_id))
        assert np.all(rows >= 0), "a star is not in the arrays file"
        for name, values in labels.items():
            ds = h5[layout.label_dataset(name)]
            data = ds[:]
            data[rows] = values
            ds[...] = data


def rewrite_catalogue(inputs: Inputs, table: pd.DataFrame) -> None:
    """Write ``table`` over the catalogue of ``inputs``, keeping its header (labels, flag
    digits)."""
    _, attrs = catalogue.read(inputs.catalogue)
    table.attrs.update(attrs)
    catalogue.write(table, inputs.catalogue)


# ------------------------------------------------------------ helpers of Fig. C.1
def add_rv_error(
    inputs: Inputs,
    out: Path,
    rv_error: Callable[[np.ndarray], np.ndarray],
    samples: Sequence[str] = ("training", "observed"),
) -> Inputs:
    """A copy of ``inputs`` (:func:`copy_products` under ``out``) whose arrays files of
    ``samples`` hold ``rvs/radial_velocity_error`` [km/s] = ``rv_error(source_id)`` (float,
    NaN where unknown), as the arrays stage writes it."""
    new = copy_products(inputs, out)
    for sample in samples:
        path = new.training if sample == "training" else new.observed
        with h5py.File(path, "r+") as h5:
            values = np.asarray(rv_error(h5["source_id"][:]), dtype=np.float32)
            ds = h5.create_dataset(layout.RV_ERROR_DATASET, data=values)
            ds.attrs["unit"] = layout.KNOWN_DATASETS[layout.RV_ERROR_DATASET][1]
    return new
