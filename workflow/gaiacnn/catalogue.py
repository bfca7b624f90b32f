"""The catalogue (paper Table 2): ensemble labels, ``e_*``, ``sigma_*``, as FITS with units and CSV.

Columns: ``source_id``, ``in_training``, ``phot_g_mean_mag`` [mag], ``parallax`` [mas],
``rvs_snr``, then for each label ``<label>``, ``e_<label>`` (model-to-model standard
deviation) and ``sigma_<label>`` (quadrature sum with the running-dispersion fit), in K
for ``teff`` and dex otherwise.  The FITS header records the configuration hash, the
members used and the meaning of every column.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from astropy.io import fits

from gaiacnn import ensemble, layout
from gaiacnn.constants import label_unit
from gaiacnn.io import atomic_output

#: Range of the training sample (Table 1) from these quantiles of the training stars.
DEFAULT_RANGE_QUANTILES = (0.0, 1.0)


def _optional(path, name: str, n: int) -> np.ndarray:
    try:
        return layout.read_column(path, name).astype(np.float32)
    except layout.LayoutError:
        return np.full(n, np.nan, np.float32)


def build(
    predictions: Mapping[str, Sequence[str | os.PathLike]],
    arrays: Mapping[str, str | os.PathLike],
    *,
    labels: Sequence[str],
    members: Sequence[str],
    n_bins: int,
    degree: int,
    range_quantiles: Sequence[float] = DEFAULT_RANGE_QUANTILES,
    config_hash: str = "",
    chunk_rows: int = 65536,
) -> tuple[pd.DataFrame, list[ensemble.DispersionFit], dict]:
    """Combine the members of both samples into the catalogue table.

    ``predictions[sample]`` lists the member prediction files of ``arrays[sample]``
    (``sample`` in training, observed).  The running dispersion is fitted on the training
    sample against its reference labels (``labels/<name>`` of the training file).
    Returns (catalogue, dispersion fits, training range).
    """
    labels = list(labels)
    tr_path = arrays["training"]
    ref = np.column_stack([layout.read_column(tr_path, f"labels/{x}") for x in labels])
    parts = {}
    for sample in ("training", "observed"):
        sids, means, stds = [], [], []
        for sid, preds in ensemble.iter_member_chunks(predictions[sample], labels, chunk_rows):
            mean, std = ensemble.combine(preds)
            sids.append(sid)
            means.append(mean)
            stds.append(std)
        sid = np.concatenate(sids)
        arr_ids = layout.read_column(arrays[sample], "source_id")
        if not np.array_equal(sid, arr_ids):
            raise ensemble.EnsembleError(
                f"predictions of {sample} do not follow the stars of {arrays[sample]}"
            )
        parts[sample] = (sid, np.concatenate(means), np.concatenate(stds))

    _, tr_mean, _ = parts["training"]
    fits_ = [
        ensemble.running_dispersion(ref[:, j], tr_mean[:, j], x, n_bins=n_bins, degree=degree)
        for j, x in enumerate(labels)
    ]
    n_tr = len(parts["training"][0])
    range_values = {x: ref[:, j] for j, x in enumerate(labels)}
    range_values["phot_g_mean_mag"] = _optional(tr_path, "phot/g", n_tr)
    range_values["parallax"] = _optional(tr_path, "astrometry/parallax", n_tr)
    range_values = {k: v for k, v in range_values.items() if np.isfinite(v).any()}
    training_range = ensemble.effective_range(range_values, range_quantiles)

    frames = []
    for sample, (sid, mean, std) in parts.items():
        n = len(sid)
        cols: dict[str, np.ndarray] = {
            "source_id": sid.astype(np.int64),
            "in_training": np.full(n, sample == "training"),
            "phot_g_mean_mag": _optional(arrays[sample], "phot/g", n),
            "parallax": _optional(arrays[sample], "astrometry/parallax", n),
            "rvs_snr": _optional(arrays[sample], "rvs/snr", n),
        }
        for j, (x, fit) in enumerate(zip(labels, fits_, strict=True)):
            cols[x] = mean[:, j].astype(np.float32)
            cols[f"e_{x}"] = std[:, j].astype(np.float32)
            cols[f"sigma_{x}"] = ensemble.total_uncertainty(std[:, j], fit, mean[:, j]).astype(
                np.float32
            )
        frames.append(pd.DataFrame(cols))
    table = pd.concat(frames, ignore_index=True)
    table.attrs.update(config_hash=config_hash, members=list(members), labels=labels)
    return table, fits_, training_range


COLUMN_DOC = {
    "source_id": ("", "Gaia DR3 source_id"),
    "in_training": ("", "T if the star is in the training sample"),
    "phot_g_mean_mag": ("mag", "Gaia G mean magnitude"),
    "parallax": ("mas", "Gaia parallax (no zero-point correction)"),
    "rvs_snr": ("", "rvs_spec_sig_to_noise"),
}


def _column_doc(name: str) -> tuple[str, str]:
    if name in COLUMN_DOC:
        return COLUMN_DOC[name]
    if name.startswith("e_"):
        return label_unit(name[2:]), f"model-to-model std of {name[2:]} (Sect. 3.4)"
    if name.startswith("sigma_"):
        return label_unit(name[6:]), f"total uncertainty of {name[6:]}: e_ (+) dispersion fit"
    return label_unit(name), f"CNN {name}, mean over the ensemble members"


def write(table: pd.DataFrame, fits_path, csv_path) -> None:
    """Write the catalogue as a FITS binary table (units, documented header) and as CSV."""
    columns = []
    for name in table.columns:
        values = table[name].to_numpy()
        unit, _ = _column_doc(name)
        fmt = {"i": "K", "b": "L", "f": "E"}[values.dtype.kind]
        columns.append(fits.Column(name=name, format=fmt, unit=unit or None, array=values))
    hdu = fits.BinTableHDU.from_columns(columns, name="CATALOGUE")
    hdr = hdu.header
    hdr["ORIGIN"] = ("gaiacnn", "Gaia-RVS hybrid-CNN workflow")
    hdr["REFERENC"] = ("Guiglion et al. 2024, A&A 682, A9", "method")
    hdr["CONFHASH"] = (table.attrs.get("config_hash", ""), "hash of the workflow config")
    members = table.attrs.get("members", [])
    hdr["NMEMBERS"] = (len(members), "ensemble members combined")
    hdr["MEMBERS"] = ",".join(members)
    hdr["LABELS"] = ",".join(table.attrs.get("labels", []))
    for i, name in enumerate(table.columns, start=1):
        hdr[f"TTYPE{i}"] = (name, _column_doc(name)[1][:47])
    hdr.add_comment("sigma_<label> = sqrt(e_<label>**2 + D(label)**2), D = polynomial fit of")
    hdr.add_comment("the running dispersion of CNN - reference over the training sample.")
    with atomic_output(fits_path) as tmp:
        hdu.writeto(tmp)
    with atomic_output(csv_path) as tmp:
        table.to_csv(tmp, index=False, float_format="%.6g")
