"""A synthetic ensemble shaped like the workflow's (members' prediction files of both
samples, with the training sample's withheld-parallax copies; arrays files with reference
labels and their errors, photometry, parallaxes, positions, S/N; a t-SNE classification),
and the catalogue the aggregation and the flag made of it when they held every star in
memory (commit 937975b; written again when the calibration came to scale the running
dispersion only, so that sigma_* >= e_*, and when the members' predictions came with
their spread under the input noise, columns e_input_*), kept as
``tests/data/golden_catalogue.npz``: the streaming aggregation and flag must give the same catalogue
(tests/test_catalogue_streaming.py).

``python tests/golden_catalogue.py`` writes the npz again from the code of the checkout:
do so only when a change of the catalogue is intended, and say so in the commit.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import h5py
import numpy as np

REPO = Path(__file__).resolve().parents[1]
GOLDEN = REPO / "tests" / "data" / "golden_catalogue.npz"
LABELS = ["teff", "logg", "m_h"]
MEMBERS = ["split0_seed0", "split0_seed1", "split1_seed0", "split1_seed1"]
N_TRAINING, N_OBSERVED = 1600, 2400
#: catalogue.build's settings of the golden run (the workflow's, with smaller bins)
BUILD = dict(
    n_bins=10,
    degree=3,
    calibration_bins=4,
    calibration_min_per_bin=60,
    input_calibration_bins=4,
    validation_fraction=0.25,
    base_seed=0,
    config_hash="golden",
)


def make_inputs(work: Path) -> dict:
    """Write the synthetic arrays, member predictions and t-SNE classification into
    ``work``; return their paths."""
    from gaiacnn.layout import ArraysWriter

    rng = np.random.default_rng(2024)
    work.mkdir(parents=True, exist_ok=True)
    arrays, truth = {}, {}
    for sample, n, first in (("training", N_TRAINING, 10**9), ("observed", N_OBSERVED, 2 * 10**9)):
        obs = sample == "observed"
        t = {
            "teff": rng.uniform(4000, 6500, n),
            "logg": rng.uniform(1.0, 4.8, n),
            "m_h": rng.normal(-0.2, 0.35, n),
        }
        g = rng.uniform(8, 14.5 if obs else 13, n)
        parallax = rng.lognormal(np.log(0.8 if obs else 1.5), 0.6, n)
        parallax_error = rng.uniform(0.02, 0.3 if obs else 0.1, n) * (1 + (g - 8) / 3)
        data = {
            "source_id": np.arange(n, dtype=np.int64) + first,
            "astrometry/ra": rng.uniform(0, 360, n),
            "astrometry/dec": rng.uniform(-90, 90, n),
            "phot/g": g,
            "phot/bp": g + rng.uniform(0.2, 0.8, n),
            "phot/rp": g - rng.uniform(0.4, 1.0, n),
            "astrometry/parallax": parallax,
            "astrometry/parallax_error": parallax_error,
            "rvs/snr": rng.lognormal(np.log(25 if obs else 60), 0.5, n),
        }
        if obs:
            # a few observed stars without BP or parallax error (digit 9 unavailable for
            # them), and reference labels for a fifth of them (the calibration's)
            data["phot/bp"][rng.choice(n, 15, replace=False)] = np.nan
            data["astrometry/parallax_error"][rng.choice(n, 10, replace=False)] = np.nan
        has_ref = np.ones(n, bool) if not obs else rng.random(n) < 0.2
        for x, v in t.items():
            err = {"teff": 40.0, "logg": 0.06, "m_h": 0.03}[x]
            data[f"labels/{x}"] = np.where(has_ref, v + rng.normal(0, err, n), np.nan)
            data[f"labels/{x}_err"] = np.where(has_ref, err, np.nan)
        cols = {k: ((), np.int64 if k == "source_id" else np.float32, {}) for k in data}
        path = work / f"{sample}.h5"
        with ArraysWriter(path, n, cols) as w:
            w.append({k: np.asarray(v, np.int64 if k == "source_id" else np.float32)
                      for k, v in data.items()})  # fmt: skip
        arrays[sample], truth[sample] = path, (data, t)
    preds: dict[str, list[Path]] = {"training": [], "observed": []}
    noise_rng = np.random.default_rng(7)
    scale = {"teff": 90.0, "logg": 0.12, "m_h": 0.06}
    for m in MEMBERS:
        for sample in ("training", "observed"):
            data, t = truth[sample]
            n = len(data["source_id"])
            noise = 1.0 + 2.0 * (30 / np.maximum(data["rvs/snr"], 5)) ** 0.5
            path = work / f"{sample}_{m}.h5"
            with h5py.File(path, "w") as h5:
                h5.attrs["branches"] = json.dumps(["rvs", "phot", "xp"])
                h5.attrs["xp_input"] = "coefficients"
                h5.attrs["parallax_withheld_snr"] = 2.0
                h5["source_id"] = data["source_id"]
                groups = ["pred", "pred_withheld"] if sample == "training" else ["pred"]
                if sample == "training":
                    h5.attrs["withheld_predictions"] = True
                h5.attrs["input_noise"] = json.dumps(["parallax", "xp"])
                h5.attrs["input_noise_draws"] = 8
                for grp in groups:
                    widen = 1.6 if grp == "pred_withheld" else 1.0
                    for x in LABELS:
                        v = t[x] + rng.normal(0, scale[x] * noise * widen, n)
                        h5[f"{grp}/{x}"] = v.astype(np.float32)
                        # the spread under the input noise: the parallax's (where used)
                        # and the XP's; its own generator, so that the rest is as before
                        rel = data["astrometry/parallax_error"] / data["astrometry/parallax"]
                        rel = np.where(np.isfinite(rel) & (grp == "pred"), rel, 0.0)
                        spread = (
                            scale[x] * (0.2 + np.minimum(rel, 0.5)) * noise_rng.uniform(0.5, 1.5, n)
                        )
                        h5[f"{grp}_noise/{x}"] = spread.astype(np.float32)
            preds[sample].append(path)
    tsne = work / "training_like.h5"
    with h5py.File(tsne, "w") as h5:
        h5["source_id"] = truth["observed"][0]["source_id"]
        h5["training_like"] = rng.random(N_OBSERVED) < 0.9
        h5.attrs["spectra"] = "rvs/flux"
    return {"arrays": arrays, "predictions": preds, "tsne": tsne}


def run(work: Path, **build_kw) -> dict[str, Path]:
    """The aggregation then the flag, as the workflow's rules call them, on the inputs of
    :func:`make_inputs` in ``work``; the paths of the labels table and the catalogue."""
    from gaiacnn import catalogue, ensemble, flags

    inp = make_inputs(work)
    table, fits_, trange, cals = catalogue.build(
        inp["predictions"], inp["arrays"], labels=LABELS, members=MEMBERS, **BUILD, **build_kw
    )
    names = (("labels", "fits"), ("model", "json"), ("catalogue", "fits"), ("csv", "csv"))
    out = {k: work / f"{k}.{ext}" for k, ext in names}
    ensemble.write_uncertainty_model(fits_, trange, MEMBERS, out["model"], cals)
    catalogue.write(table, out["labels"])
    flags.run_flag_catalogue(
        out["labels"], inp["tsne"], out["model"], out["catalogue"], out["csv"], labels=LABELS
    )
    return out


def columns(fits_path: Path) -> dict[str, np.ndarray]:
    """Every column of a catalogue FITS file, as numpy arrays (strings as str)."""
    from astropy.io import fits

    with fits.open(fits_path) as hdul:
        data = hdul[1].data
        return {
            name: np.asarray(data[name]).astype(str)
            if data[name].dtype.kind in "SU"
            else np.asarray(data[name])
            for name in data.columns.names
        }


def main() -> int:
    sys.path.insert(0, str(REPO / "workflow"))
    with tempfile.TemporaryDirectory() as tmp:
        out = run(Path(tmp))
        cat = columns(out["catalogue"])
        GOLDEN.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(GOLDEN, **cat)
    print(f"wrote {GOLDEN} ({len(cat['source_id'])} stars, {len(cat)} columns)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
