"""Dataset names, units and kinds, :class:`LayoutError` and :class:`LayoutInfo`."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

#: Datasets of known meaning: name -> (number of axes, unit).
KNOWN_DATASETS: dict[str, tuple[int, str]] = {
    "source_id": (1, ""),
    "rvs/flux": (2, "normalised flux"),
    "rvs/flux_error": (2, "normalised flux"),
    "rvs/snr": (1, ""),
    "rvs/radial_velocity_error": (1, "km/s"),
    "xp/bp_coefficients": (2, "e-/s"),
    "xp/rp_coefficients": (2, "e-/s"),
    "xp/bp_coefficient_errors": (2, "e-/s"),
    "xp/rp_coefficient_errors": (2, "e-/s"),
    "xp/sampled_flux": (2, "W m-2 nm-1"),
    "phot/g": (1, "mag"),
    "phot/bp": (1, "mag"),
    "phot/rp": (1, "mag"),
    "astrometry/parallax": (1, "mas"),
    "astrometry/parallax_error": (1, "mas"),
    "astrometry/ruwe": (1, ""),
    "astrometry/ra": (1, "deg"),
    "astrometry/dec": (1, "deg"),
}
#: Names of single datasets of the layout, for the code that reads or writes them.
RVS_FLUX_DATASET = "rvs/flux"
RVS_FLUX_ERROR_DATASET = "rvs/flux_error"
RVS_SNR_DATASET = "rvs/snr"
PARALLAX_DATASET = "astrometry/parallax"
PARALLAX_ERROR_DATASET = "astrometry/parallax_error"
RUWE_DATASET = "astrometry/ruwe"
PHOT_DATASETS = ("phot/g", "phot/bp", "phot/rp")
XP_COEFFICIENT_DATASETS = ("xp/bp_coefficients", "xp/rp_coefficients")
#: Optional 1 sigma errors of the XP coefficients [e-/s] (Gaia DR3 ``bp_coefficient_errors``,
#: ``rp_coefficient_errors``), in the order of :data:`XP_COEFFICIENT_DATASETS`: finite and
#: >= 0, or NaN where unknown; never a model input (the XP noise augmentation, and the
#: input noise's XP draws, ``uncertainty.input_noise: [xp]``, read them).
XP_ERROR_DATASETS = ("xp/bp_coefficient_errors", "xp/rp_coefficient_errors")
XP_SAMPLED_DATASET = "xp/sampled_flux"
#: Values of ``xp/sampled_flux``'s attribute ``flux_kind``: absolute flux as GaiaXPy's
#: ``calibrate`` writes it (W m-2 nm-1), or flux already normalised by the survey.
XP_FLUX_KINDS = ("absolute", "normalised")
#: The two forms of the XP branch's input (``model.xp_input``).
XP_INPUTS = ("coefficients", "sampled")
#: Optional sky position (ICRS, deg), both or neither; never a model input.
POSITION_DATASETS = ("astrometry/ra", "astrometry/dec")
#: Optional radial-velocity uncertainty [km/s] (Gaia DR3 ``radial_velocity_error``): finite
#: and >= 0, or NaN where unknown; never a model input (Fig. C.1, Appendix C, only).
RV_ERROR_DATASET = "rvs/radial_velocity_error"
#: Datasets that feed the model: they must be finite after the arrays stage.
MODEL_INPUT_DATASETS = frozenset(
    {
        RVS_FLUX_DATASET,
        *PHOT_DATASETS,
        PARALLAX_DATASET,
        *XP_COEFFICIENT_DATASETS,
        XP_SAMPLED_DATASET,
    }
)
DEFAULT_CHUNK_ROWS = 256


class LayoutError(ValueError):
    """A file that does not follow the interchange layout."""

    def __init__(self, path: str | os.PathLike, dataset: str | None, problem: str):
        where = f"{path}" + (f": {dataset}" if dataset else "")
        super().__init__(f"{where}: {problem}")
        self.path = str(path)
        self.dataset = dataset
        self.problem = problem


@dataclass(frozen=True)
class LayoutInfo:
    """What a validated file holds."""

    path: str
    n_rows: int
    n_pixels: int | None  # RVS pixels, None without rvs/flux
    xp_length: int | None  # coefficients per band, None without XP coefficients
    has_photometry: bool
    has_parallax: bool
    labels: tuple[str, ...]
    attrs: dict[str, Any] = field(default_factory=dict)
    xp_sampled_length: int | None = None  # K samples of xp/sampled_flux, None without it
    xp_flux_kind: str | None = None  # xp/sampled_flux's flux_kind attribute
    has_xp_errors: bool = False  # xp/*_coefficient_errors (XP_ERROR_DATASETS)
    #: (cut, rule, rows removed) of the per-star cuts, when the values were checked
    cuts: tuple[tuple[str, str, int], ...] = ()

    @property
    def branches(self) -> tuple[str, ...]:
        """Model branches the file can feed: subset of ("rvs", "phot", "xp")."""
        out = []
        if self.n_pixels is not None:
            out.append("rvs")
        if self.has_photometry:
            out.append("phot")
        if self.xp_inputs:
            out.append("xp")
        return tuple(out)

    @property
    def xp_inputs(self) -> tuple[str, ...]:
        """Forms of XP data the file holds: subset of :data:`XP_INPUTS`."""
        return tuple(
            kind
            for kind, length in zip(
                XP_INPUTS, (self.xp_length, self.xp_sampled_length), strict=True
            )
            if length is not None
        )


def resolve_xp_input(info: LayoutInfo, choice: str) -> str | None:
    """The XP input the model reads from ``info``'s file: ``choice`` "coefficients" or
    "sampled" (refused if the file lacks it), or "auto": the coefficients where the file has
    them (the paper, Sect. 3.1), else the sampled flux; None if the file has no XP data."""
    if choice == "auto":
        return info.xp_inputs[0] if info.xp_inputs else None
    if choice not in XP_INPUTS:
        raise ValueError(f"xp_input {choice!r}: auto, {' or '.join(XP_INPUTS)}")
    if choice not in info.xp_inputs:
        dataset = XP_COEFFICIENT_DATASETS[0] if choice == "coefficients" else XP_SAMPLED_DATASET
        raise LayoutError(
            info.path,
            dataset,
            f"model.xp_input is {choice!r} but the file has no such data "
            f"(it has: {', '.join(info.xp_inputs) or 'no XP data'})",
        )
    return choice


def resolve_branches(info: LayoutInfo, branches: Sequence[str]) -> tuple[str, ...]:
    """The model's branches: ``branches`` as given, or, when empty, every branch the file
    can feed (``model.branches: []``)."""
    return tuple(branches) if branches else info.branches


def label_dataset(name: str) -> str:
    """HDF5 path of label ``name``."""
    return f"labels/{name}"
