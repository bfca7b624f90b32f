"""Reading rows and columns, and which datasets each model branch uses."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence

import h5py
import numpy as np

from gaiacnn.layout.checks import _open, validate
from gaiacnn.layout.names import (
    KNOWN_DATASETS,
    PARALLAX_DATASET,
    PARALLAX_ERROR_DATASET,
    PHOT_DATASETS,
    POSITION_DATASETS,
    RUWE_DATASET,
    RV_ERROR_DATASET,
    RVS_FLUX_DATASET,
    RVS_FLUX_ERROR_DATASET,
    RVS_SNR_DATASET,
    XP_COEFFICIENT_DATASETS,
    XP_ERROR_DATASETS,
    XP_SAMPLED_DATASET,
    LayoutError,
    LayoutInfo,
    resolve_branches,
    resolve_xp_input,
)


def iter_rows(
    path: str | os.PathLike,
    names: Sequence[str],
    chunk_rows: int = 4096,
    rows: tuple[int, int] | None = None,
) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
    """Yield ``(start_row, {name: block})`` over the file in row chunks (memory ~ chunk_rows);
    over rows ``[start, stop)`` only if ``rows`` is given (a shard)."""
    with _open(path) as h5:
        n = h5["source_id"].shape[0]
        first, last = (0, n) if rows is None else (int(rows[0]), int(rows[1]))
        if not 0 <= first <= last <= n:
            raise LayoutError(path, "source_id", f"rows {first}..{last} outside the {n} rows")
        for name in names:
            if name not in h5:
                raise LayoutError(path, name, "dataset is missing")
        for start in range(first, last, chunk_rows):
            stop = min(start + chunk_rows, last)
            yield start, {name: h5[name][start:stop] for name in names}


def read_column(path: str | os.PathLike, name: str) -> np.ndarray:
    """Read one 1-D dataset whole (source ids, labels, magnitudes: N values)."""
    with _open(path) as h5:
        if name not in h5:
            raise LayoutError(path, name, "dataset is missing")
        return h5[name][:]


def wavelength_nm(path: str | os.PathLike, dataset: str = RVS_FLUX_DATASET) -> np.ndarray:
    """The wavelength grid [nm] stored with ``dataset`` (``rvs/flux`` or ``xp/sampled_flux``)."""
    with _open(path) as h5:
        if dataset not in h5:
            raise LayoutError(path, dataset, "dataset is missing")
        return np.asarray(h5[dataset].attrs["wavelength_nm"], dtype=float)


# --------------------------------------------------------------------------- usage


def xp_datasets(xp_input: str | None) -> tuple[str, ...]:
    """The datasets of an XP input form ("coefficients", the default, or "sampled")."""
    return (XP_SAMPLED_DATASET,) if xp_input == "sampled" else XP_COEFFICIENT_DATASETS


#: Forms of the photometry branch's input (``model.phot_input``): the paper's G, BP, RP
#: [mag] and parallax [mas]; "intrinsic": BP - RP, G - RP and the parallax as 10^(0.2 M_G)
#: (:func:`gaiacnn.spectra.phot_features`), no apparent magnitude, so that a star's
#: distance is not an input; "intrinsic_with_error": the same and that quantity's error;
#: "intrinsic_withheld": the same, with the parallax withheld (and a 0/1 input saying so)
#: where its S/N is below the training stars' (``model.training.withhold_parallax_*``).
PHOT_INPUTS: tuple[str, ...] = (
    "magnitudes",
    "intrinsic",
    "intrinsic_with_error",
    "intrinsic_withheld",
)
#: Photometry forms that read the parallax error as an input (a fourth feature, or the
#: parallax S/N that decides whether the parallax is withheld).
PHOT_INPUTS_WITH_ERROR: tuple[str, ...] = ("intrinsic_with_error", "intrinsic_withheld")


def phot_columns(has_parallax: bool, phot_input: str = "magnitudes") -> list[str]:
    """The photometry branch's datasets: G, BP, RP, and the parallax where there is one
    (with its error for ``intrinsic_with_error``, whose fourth feature it is, and for
    ``intrinsic_withheld``, which withholds a parallax of too low a S/N).  The
    parallax augmentation reads the error too, but as training data, not as an input
    (``model.training.augment_parallax_snr_min``)."""
    if phot_input not in PHOT_INPUTS:
        raise ValueError(f"unknown phot_input {phot_input!r} (known: {', '.join(PHOT_INPUTS)})")
    cols = [*PHOT_DATASETS]
    if has_parallax:
        cols.append(PARALLAX_DATASET)
        if phot_input in PHOT_INPUTS_WITH_ERROR:
            cols.append(PARALLAX_ERROR_DATASET)
    return cols


def datasets_of_branches(
    branches: Iterable[str], phot: Sequence[str], xp_input: str | None
) -> dict[str, str]:
    """Dataset -> the model branch that reads it, for ``branches`` in their order: ``phot``
    the photometry branch's datasets (:func:`phot_columns`), ``xp_input`` the XP form."""
    out: dict[str, str] = {}
    for b in branches:
        if b == "rvs":
            names: Sequence[str] = (RVS_FLUX_DATASET,)
        elif b == "phot":
            names = phot
        elif b == "xp":
            names = xp_datasets(xp_input)
        else:
            raise ValueError(f"unknown branch {b!r} (known: rvs, phot, xp)")
        out.update(dict.fromkeys(names, b))
    return out


def branch_datasets(
    info: LayoutInfo,
    branches: Sequence[str],
    xp_input: str | None,
    phot_input: str = "magnitudes",
) -> dict[str, str]:
    """Dataset -> model branch that reads it, for ``branches`` (empty: every branch the file
    can feed), the XP form ``xp_input`` (resolved: "coefficients" or "sampled") and the
    photometry form ``phot_input``."""
    return datasets_of_branches(
        resolve_branches(info, branches), phot_columns(info.has_parallax, phot_input), xp_input
    )


def all_datasets(path: str | os.PathLike) -> list[str]:
    """Every dataset of an HDF5 file, by path, in file order."""
    names: list[str] = []
    with _open(path) as h5:
        h5.visititems(
            lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None
        )
    return names


def dataset_usage(
    path: str | os.PathLike,
    *,
    sample: str,
    branches: Sequence[str] = (),
    xp_input: str = "auto",
    labels: Sequence[str] = (),
    tsne_spectra: str | None = None,
    phot_input: str = "magnitudes",
) -> list[tuple[str, str]]:
    """What the workflow does with each dataset of a layout file: ``(dataset, "used: ..."
    or "ignored: <why>")``, every dataset of the file listed once.

    ``branches``/``xp_input``/``labels`` as in the config (``model.*``; empty = what the file
    offers); ``tsne_spectra`` the dataset the t-SNE stage embeds (None: not known here).
    """
    info = validate(path, check_values=False)
    form = resolve_xp_input(info, xp_input) if "xp" in resolve_branches(info, branches) else None
    feeds = branch_datasets(info, branches, form, phot_input)
    wanted = list(labels) or list(info.labels)
    chosen = set(resolve_branches(info, branches))
    out: list[tuple[str, str]] = []
    for name in all_datasets(path):
        uses: list[str] = []
        why = ""
        if name in feeds:
            uses.append(f"{feeds[name]} branch")
        if name == "source_id":
            uses.append("star identifier")
        elif name == tsne_spectra or (
            tsne_spectra == "xp/coefficients" and name in XP_COEFFICIENT_DATASETS
        ):
            uses.append("t-SNE classification")
        if name == "phot/g":
            uses.append("flag digit G")
        elif name == PARALLAX_DATASET:
            uses.append("flag digit parallax")
        elif name == RVS_SNR_DATASET:
            uses.append("S/N of the catalogue, the uncertainty calibration and the figures")
            if sample == "training":
                uses.append("training cut S/N")
        elif name in (PARALLAX_ERROR_DATASET, RUWE_DATASET):
            if name == PARALLAX_ERROR_DATASET:
                uses.append("flag digit inputs")
            if sample == "training":
                uses.append("training cut (Sect. 2.5)")
            else:
                why = "the observed sample has no cut on it and it is not a model input"
        elif name == RVS_FLUX_ERROR_DATASET:
            if "rvs" in chosen:
                uses.append("noise augmentation of the rvs branch (when on)")
            else:
                why = "the rvs branch is not used"
        elif name in XP_ERROR_DATASETS:
            if "xp" in chosen and form == "coefficients":
                uses.append("noise augmentation of the xp branch (when on)")
            else:
                why = (
                    f"model.xp_input uses the {form}"
                    if form
                    else "model.branches leaves out the xp branch"
                )
        elif name in POSITION_DATASETS:
            uses.append("Galactic figures (Fig. 24)")
        elif name == RV_ERROR_DATASET:
            uses.append("figures only: residuals against the RV uncertainty (Fig. C.1)")
        elif name.startswith("labels/"):
            label = name.removeprefix("labels/").removesuffix("_err")
            if label not in wanted:
                why = f"label {label!r} is not in model.labels"
            elif name.endswith("_err"):
                uses.append("reference label error (uncertainty model)")
            else:
                uses.append(
                    "training label" if sample == "training" else "reference label (validation)"
                )
        elif name in KNOWN_DATASETS and name not in feeds and not uses:
            if name in XP_COEFFICIENT_DATASETS or name == XP_SAMPLED_DATASET:
                why = (
                    f"model.xp_input uses the {form}"
                    if form
                    else "model.branches leaves out the xp branch"
                )
            else:
                branch = {RVS_FLUX_DATASET: "rvs"}.get(name, "phot")
                why = f"model.branches leaves out the {branch} branch"
        elif name not in KNOWN_DATASETS and not uses:
            why = "not part of the layout (unknown dataset)"
        if uses:
            out.append((name, "used: " + "; ".join(uses)))
        else:
            out.append((name, "ignored: " + (why or "not read by any stage")))
    return out
