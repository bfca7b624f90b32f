"""What the figures read: the catalogue and the files behind it, loaded once and lazily.

Every figure function takes a :class:`Context` and asks it for what it needs; a figure the
data does not allow raises :class:`Skip` with the reason (recorded in the figure index).

A survey's arrays files may hold only some inputs (SPEC stage 3: no RVS spectra, no
photometry, no parallax, XP sampled flux instead of coefficients) and any set of labels.
:meth:`Context.has`, :meth:`Context.require` and :meth:`Context.measured` tell a figure
whether an input is there, and :func:`missing_input` words the reason of a figure that
needs one that is not ("no rvs/flux in the arrays: the survey has no RVS spectra").
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
from astropy.io import fits

from gaiacnn import catalogue, ensemble, flags, layout
from gaiacnn.evaluation import DEFAULT_SNR_EDGES
from gaiacnn.layout import PARALLAX_DATASET, RVS_FLUX_DATASET, RVS_SNR_DATASET, XP_SAMPLED_DATASET

#: Each optional input of the arrays files: (its datasets, what the survey then lacks), for
#: the reasons of skipped figures (:func:`missing_input`).
INPUTS: dict[str, tuple[str, str]] = {
    RVS_FLUX_DATASET: (RVS_FLUX_DATASET, "RVS spectra"),
    RVS_SNR_DATASET: (RVS_SNR_DATASET, "RVS S/N (rvs_spec_sig_to_noise)"),
    "phot": ("phot/g, phot/bp, phot/rp", "photometry"),
    "phot/g": ("phot/g", "G magnitudes"),
    PARALLAX_DATASET: (PARALLAX_DATASET, "parallaxes"),
    "xp": ("xp/bp_coefficients, xp/rp_coefficients or xp/sampled_flux", "XP spectra"),
    "xp/coefficients": ("xp/bp_coefficients, xp/rp_coefficients", "XP coefficients"),
    XP_SAMPLED_DATASET: (XP_SAMPLED_DATASET, "XP sampled spectra"),
}
#: Catalogue columns copied from the arrays files: NaN (or absent) where the files lack them.
MEASURED_COLUMNS: dict[str, str] = {
    "rvs_snr": RVS_SNR_DATASET,
    "phot_g_mean_mag": "phot/g",
    "parallax": PARALLAX_DATASET,
}
#: The ``flag_boundary`` character of a digit whose input the data lack ("not available").
NOT_AVAILABLE = flags.NOT_AVAILABLE
#: Metallicity labels, in order of preference: [Fe/H] stands in for a missing [M/H].
METALLICITY_LABELS = ("m_h", "fe_h")


def snr_edges(cfg: Mapping) -> np.ndarray:
    """S/N bin edges of the figures from ``cfg["snr_edges"]`` (the configured
    ``evaluation.snr_edges``; default 15, 25, 35, 75, Sect. 4.2, 4.5), last bin open (inf)."""
    edges = [float(x) for x in cfg.get("snr_edges", DEFAULT_SNR_EDGES)]
    if np.isfinite(edges[-1]):
        edges.append(np.inf)
    return np.asarray(edges)


class Skip(Exception):
    """This figure cannot be drawn from the data at hand (the message says why)."""


def missing_input(name: str, detail: str = "") -> Skip:
    """The :class:`Skip` of a figure that needs input ``name`` (a key of :data:`INPUTS`, or
    any dataset name) which the arrays files lack: ``no rvs/flux in the arrays: the survey
    has no RVS spectra``, then ``detail`` in brackets."""
    datasets, what = INPUTS.get(name, (name, name))
    return Skip(
        f"no {datasets} in the arrays: the survey has no {what}"
        + (f" ({detail})" if detail else "")
    )


def metallicity_note(name: str) -> str:
    """Caption note when [Fe/H] stands in for [M/H] (empty for ``m_h``)."""
    if name == "m_h":
        return ""
    return f" [Fe/H] stands in for [M/H] here: the catalogue has no m_h label, only {name}."


@dataclass(frozen=True)
class Inputs:
    """Paths of the workflow products the figures read (optional ones may be None/empty)."""

    catalogue: Path
    training: Path
    observed: Path
    uncertainty_model: Path
    maps: Sequence[Path] = ()
    members: Sequence[Path] = ()
    truth: Path | None = None
    external: Mapping[str, Path] = field(default_factory=dict)


class Context:
    """The data of one figure run; each piece read on first use and kept."""

    def __init__(self, inputs: Inputs, cfg: Mapping | None = None):
        self.inputs = inputs
        self.cfg = dict(cfg or {})

    # ------------------------------------------------------------------ catalogue
    @cached_property
    def _catalogue(self) -> tuple[pd.DataFrame, dict]:
        return catalogue.read(self.inputs.catalogue)

    @property
    def table(self) -> pd.DataFrame:
        """The catalogue (training stars first, then observed), one row per star."""
        return self._catalogue[0]

    @property
    def labels(self) -> list[str]:
        """The catalogue's labels, in order."""
        return list(self._catalogue[1]["labels"])

    def column(self, name: str) -> np.ndarray:
        """A catalogue column as float; :class:`Skip` if the catalogue has none."""
        if name not in self.table:
            raise Skip(f"the catalogue has no column {name}")
        return self.table[name].to_numpy(float)

    def measured(self, name: str) -> np.ndarray:
        """A catalogue column copied from the arrays files (:data:`MEASURED_COLUMNS`:
        ``rvs_snr``, ``phot_g_mean_mag``, ``parallax``) as float; :class:`Skip` naming the
        missing input when the column is absent or NaN for every star."""
        dataset = MEASURED_COLUMNS[name]
        if name not in self.table:
            raise missing_input(dataset, f"the catalogue has no column {name}")
        values = self.table[name].to_numpy(float)
        if not np.isfinite(values).any():
            raise missing_input(dataset, f"the catalogue's {name} is NaN for every star")
        return values

    def optional(self, name: str) -> np.ndarray | None:
        """:meth:`measured`, or None where the data lack it."""
        try:
            return self.measured(name)
        except Skip:
            return None

    def metallicity(self, available: Sequence[str] | None = None) -> str | None:
        """The metallicity label of the figures: ``m_h``, else ``fe_h`` (the first of
        :data:`METALLICITY_LABELS` among ``available``, default the catalogue's labels), or
        None."""
        have = self.labels if available is None else list(available)
        return next((x for x in METALLICITY_LABELS if x in have), None)

    @cached_property
    def in_training(self) -> np.ndarray:
        return self.table["in_training"].to_numpy(bool)

    # ------------------------------------------------------------------ boundary flag
    @cached_property
    def _flags(self) -> pd.Series:
        if "flag_boundary" not in self.table:
            raise Skip("the catalogue has no flag_boundary column (inside/outside the limits)")
        return self.table["flag_boundary"].astype(str)

    @cached_property
    def inside(self) -> np.ndarray:
        """Observed stars with no ``flag_boundary`` digit ``1`` (recommended, Sect. 5.2):
        all zeros, or zeros and ``-`` (a digit whose input the data lack, not available)."""
        clean = self._flags.str.fullmatch(f"[0{NOT_AVAILABLE}]+").to_numpy(bool)
        return ~self.in_training & clean

    @cached_property
    def outside(self) -> np.ndarray:
        """Observed stars with at least one flag digit ``1``."""
        return ~self.in_training & ~self.inside

    @cached_property
    def flag_digits(self) -> list[str]:
        """Names of the ``flag_boundary`` digits, in order (the catalogue header's FLAGDIGS,
        else the labels, G, parallax and t-SNE)."""
        digits = fits.getheader(self.inputs.catalogue, 1).get("FLAGDIGS", "")
        names = [d for d in str(digits).split(",") if d]
        return names or flags.digit_order(self.labels)

    @cached_property
    def unavailable_digits(self) -> list[str]:
        """Names of the ``flag_boundary`` digits that are ``-`` (not available) for some star."""
        chars = self._flags.to_numpy(str)
        width = max((len(f) for f in chars), default=0)
        names = self.flag_digits if len(self.flag_digits) == width else []
        out = []
        for j in range(width):
            if any(len(f) > j and f[j] == NOT_AVAILABLE for f in chars):
                name = names[j] if names else f"digit {j + 1}"
                out.append(flags.DIGIT_NAMES.get(name, name))
        return out

    def flag_note(self) -> str:
        """Caption note on the ``-`` digits of ``flag_boundary`` (empty without any)."""
        if not self.unavailable_digits:
            return ""
        names = self.unavailable_digits
        return (
            f" flag_boundary: the {', '.join(names)} digit{'s are' if len(names) > 1 else ' is'}"
            " '-' (not available: the data lack that input), which does not count as outside;"
            " inside the training limits = no digit 1."
        )

    # ------------------------------------------------------------------ reference labels
    @cached_property
    def reference(self) -> pd.DataFrame:
        """The input (reference, e.g. APOGEE) label of every catalogue star where its arrays
        file has one (NaN elsewhere), aligned with :attr:`table`."""
        out = pd.DataFrame(index=pd.RangeIndex(len(self.table)))
        sid = self.table["source_id"].to_numpy()
        for path in (self.inputs.training, self.inputs.observed):
            with h5py.File(path, "r") as h5:
                rows = pd.Index(h5["source_id"][:]).get_indexer(sid)
                have = rows >= 0
                for name in self.labels:
                    ds = layout.label_dataset(name)
                    if ds not in h5:
                        continue
                    if name not in out:
                        out[name] = np.nan
                    values = h5[ds][:]
                    out.loc[have, name] = values[rows[have]]
        return out

    # ------------------------------------------------------------------ ensemble products
    @cached_property
    def _uncertainty_model(self) -> tuple[dict, dict]:
        return ensemble.read_uncertainty_model(self.inputs.uncertainty_model)

    @property
    def dispersion_fits(self) -> dict:
        """Running-dispersion fit of each label (Sect. 3.4)."""
        return self._uncertainty_model[0]

    @property
    def training_range(self) -> dict:
        """Effective training range of each flagged quantity (Sect. 5.2)."""
        return self._uncertainty_model[1]

    @cached_property
    def uncertainty_doc(self) -> dict:
        return json.loads(Path(self.inputs.uncertainty_model).read_text())

    # ------------------------------------------------------------------ arrays
    def arrays_file(self, sample: str) -> Path:
        return Path(self.inputs.training if sample == "training" else self.inputs.observed)

    @cached_property
    def _datasets(self) -> dict[str, frozenset[str]]:
        out = {}
        for sample in ("training", "observed"):
            names: set[str] = set()
            with h5py.File(self.arrays_file(sample), "r") as h5:
                h5.visit(names.add)
            out[sample] = frozenset(names)
        return out

    def has(self, *names: str, sample: str = "training") -> bool:
        """Whether the ``sample`` arrays file holds every dataset of ``names``."""
        return all(n in self._datasets[sample] for n in names)

    def require(self, name: str, sample: str = "training", *, what: str | None = None) -> None:
        """:class:`Skip` (:func:`missing_input`) unless the ``sample`` arrays file holds
        ``name``; ``what``: the key of :data:`INPUTS` to name (default ``name``)."""
        if not self.has(name, sample=sample):
            raise missing_input(what or name)

    def read_arrays(self, sample: str, names: Sequence[str], rows: np.ndarray | None = None):
        """Datasets of the ``sample`` arrays file (rows in file order); :class:`Skip` if one
        is absent."""
        path = self.arrays_file(sample)
        out = {}
        with h5py.File(path, "r") as h5:
            for n in names:
                if n not in h5:
                    raise missing_input(n, f"{path.name} has no dataset {n}")
                out[n] = h5[n][:] if rows is None else h5[n][np.sort(rows)]
        return out

    def catalogue_rows(self, sample: str) -> np.ndarray:
        """Row in :attr:`table` of each star of the ``sample`` arrays file, in file order."""
        with h5py.File(self.arrays_file(sample), "r") as h5:
            sid = h5["source_id"][:]
        return pd.Index(self.table["source_id"].to_numpy()).get_indexer(sid)

    def wavelength_nm(self) -> np.ndarray:
        self.require(RVS_FLUX_DATASET)
        return layout.wavelength_nm(self.inputs.training)

    # ------------------------------------------------------------------ truth (demo)
    @cached_property
    def truth(self) -> pd.DataFrame:
        """True labels and Cramer-Rao bounds of the demo stars, aligned with :attr:`table`
        (:class:`Skip` without a truth file: only the demo has one)."""
        if self.inputs.truth is None or not os.path.exists(self.inputs.truth):
            raise Skip("no truth file (demo survey only)")
        sid = self.table["source_id"].to_numpy()
        out = pd.DataFrame(index=pd.RangeIndex(len(sid)))
        with h5py.File(self.inputs.truth, "r") as h5:
            rows = pd.Index(h5["source_id"][:]).get_indexer(sid)
            if np.any(rows < 0):
                raise Skip(f"{int((rows < 0).sum())} catalogue stars are not in the truth file")
            for group in ("truth", "crlb_all", "crlb_rvs"):
                if group not in h5:
                    continue
                for name, ds in h5[group].items():
                    key = name if group == "truth" else f"{group}_{name}"
                    out[key] = ds[:][rows]
        return out

    def dispersion(self, name: str):
        """The :class:`gaiacnn.ensemble.DispersionFit` of label ``name``."""
        try:
            return self.dispersion_fits[name]
        except KeyError as err:
            raise Skip(f"no running-dispersion fit for {name}") from err


def photometry(ctx: Context) -> pd.DataFrame:
    """G, G_BP, G_RP [mag] of every catalogue star from the arrays files (NaN where a file
    has none), aligned with the catalogue."""
    out = pd.DataFrame(index=pd.RangeIndex(len(ctx.table)))
    sid = ctx.table["source_id"].to_numpy()
    for sample in ("training", "observed"):
        with h5py.File(ctx.arrays_file(sample), "r") as h5:
            rows = pd.Index(h5["source_id"][:]).get_indexer(sid)
            have = rows >= 0
            for name in layout.PHOT_DATASETS:
                key = name.split("/")[1]
                if key not in out:
                    out[key] = np.nan
                if name in h5:
                    out.loc[have, key] = h5[name][:][rows[have]]
    return out
