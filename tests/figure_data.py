"""A small, complete set of the workflow's products for the figure tests, made from the
demo physics (true labels, realistic spectra) without running the workflow: arrays files,
a catalogue whose CNN labels are the truth plus noise, an uncertainty model, t-SNE maps,
one untrained ensemble member (random weights: real gradients, meaningless values) and the
truth file."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
from matplotlib.image import imread

from gaiacnn import catalogue, ensemble, layout, model
from gaiacnn.constants import rvs_wavelength_nm
from gaiacnn.demo.physics import OOD_POPULATIONS, POPULATION_CODES, simulate_stars
from gaiacnn.figures import style
from gaiacnn.figures.context import Context, Inputs
from gaiacnn.figures.render import render_all
from gaiacnn.spectra import fill_nan_pixels

LABELS = ["teff", "logg", "m_h", "alpha_m", "fe_h"]
NOISE = {"teff": 60.0, "logg": 0.1, "m_h": 0.07, "alpha_m": 0.03, "fe_h": 0.07}


def make_products(out: Path, n: int = 600, seed: int = 3, member: bool = True) -> Inputs:
    """Write the products under ``out`` and return their :class:`Inputs`."""
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    truth, obs = simulate_stars(rng, n)
    wl = rvs_wavelength_nm()
    flux, _ = fill_nan_pixels(obs["flux"], wl)
    ood = np.isin(truth["population"], [POPULATION_CODES[p] for p in OOD_POPULATIONS])
    is_tr = ~ood & (obs["snr"] >= 30) & (rng.random(n) < 0.6)
    sid = np.arange(n, dtype=np.int64) + 4 * 10**15
    cols = {
        "source_id": ((), np.int64, {}),
        "rvs/flux": ((wl.size,), np.float32, {"wavelength_nm": wl}),
        "rvs/snr": ((), np.float32, {}),
        "xp/bp_coefficients": ((55,), np.float32, {}),
        "xp/rp_coefficients": ((55,), np.float32, {}),
        "phot/g": ((), np.float32, {}),
        "phot/bp": ((), np.float32, {}),
        "phot/rp": ((), np.float32, {}),
        "astrometry/parallax": ((), np.float32, {}),
        **{layout.label_dataset(x): ((), np.float32, {}) for x in LABELS},
    }
    paths = {}
    for sample, mask in (("training", is_tr), ("observed", ~is_tr)):
        paths[sample] = out / f"{sample}.h5"
        with layout.ArraysWriter(paths[sample], int(mask.sum()), cols) as w:
            row = {
                "source_id": sid[mask],
                "rvs/flux": flux[mask],
                "rvs/snr": obs["snr"][mask],
                "xp/bp_coefficients": obs["bp_coefficients"][mask],
                "xp/rp_coefficients": obs["rp_coefficients"][mask],
                "phot/g": obs["phot_g_mean_mag"][mask],
                "phot/bp": obs["phot_bp_mean_mag"][mask],
                "phot/rp": obs["phot_rp_mean_mag"][mask],
                "astrometry/parallax": obs["parallax"][mask],
            }
            for x in LABELS:  # reference labels: the truth plus a little noise; NaN for OOD
                ref = truth[x] + rng.normal(0, NOISE[x] / 2, n)
                row[layout.label_dataset(x)] = np.where(ood, np.nan, ref)[mask]
            w.append(row)
    order = np.r_[np.flatnonzero(is_tr), np.flatnonzero(~is_tr)]
    table = pd.DataFrame(
        {
            "source_id": sid[order],
            "in_training": is_tr[order],
            "phot_g_mean_mag": obs["phot_g_mean_mag"][order],
            "parallax": obs["parallax"][order],
            "rvs_snr": obs["snr"][order],
        }
    )
    for x in LABELS:
        e = NOISE[x] * (0.3 + 10 / obs["snr"][order])
        table[x] = truth[x][order] + rng.normal(0, 1, n) * e
        table[f"e_{x}"] = 0.3 * e
        table[f"sigma_{x}"] = e
    like = ~ood[order] | (rng.random(n) < 0.02)
    table["flag_boundary"] = np.where(is_tr[order] | like, "00000000", "00000001")
    table.loc[np.flatnonzero(table["teff"].to_numpy() > 7000), "flag_boundary"] = "10000001"
    table.attrs.update(labels=LABELS, members=["split0_seed0"], config_hash="test")
    paths["catalogue"] = out / "catalogue.fits"
    catalogue.write(table, paths["catalogue"])
    fits_ = []
    for x in LABELS:
        d = (table[x] - truth[x][order]).to_numpy()[is_tr[order]]
        c = float(np.median(truth[x][is_tr]))
        fits_.append(ensemble.DispersionFit(x, [c], [float(np.std(d))], [int(is_tr.sum())],
                                            [float(np.std(d))], c, c))  # fmt: skip
    rng_ = ensemble.effective_range(
        {x: truth[x][is_tr] for x in LABELS}
        | {"phot_g_mean_mag": obs["phot_g_mean_mag"][is_tr], "parallax": obs["parallax"][is_tr]},
        (0.0, 1.0),
    )
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
        maps.append(path)
    members = []
    if member:
        rows = np.arange(int(is_tr.sum()))
        scalers = model.fit_scalers(paths["training"], rows, LABELS, ["rvs", "phot", "xp"])
        net = model.model_for(scalers, {"conv_filters": [4, 4, 4], "rvs_dense": 16, "xp_dense": 8})
        members.append(out / "members" / "split0_seed0")
        model._save_member(members[0], net, scalers, {"loss": [1.0]})
    paths["truth"] = out / "truth.h5"
    with h5py.File(paths["truth"], "w") as h5:
        h5["source_id"] = sid
        for k in ("teff", "logg", "m_h", "alpha_m", "fe_h", "R_kpc", "z_kpc", "population"):
            h5[f"truth/{k}"] = truth[k]
        for x in LABELS:
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
