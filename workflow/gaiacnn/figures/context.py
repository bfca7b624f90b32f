"""What the figures read: the catalogue and the files behind it, loaded once and lazily.

Every figure function takes a :class:`Context` and asks it for what it needs; a figure the
data does not allow raises :class:`Skip` with the reason (recorded in the figure index).
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

from gaiacnn import catalogue, ensemble, layout
from gaiacnn.evaluation import DEFAULT_SNR_EDGES


def snr_edges(cfg: Mapping) -> np.ndarray:
    """S/N bin edges of the figures from ``cfg["snr_edges"]`` (the configured
    ``evaluation.snr_edges``; default 15, 25, 35, 75, Sect. 4.2, 4.5), last bin open (inf)."""
    edges = [float(x) for x in cfg.get("snr_edges", DEFAULT_SNR_EDGES)]
    if np.isfinite(edges[-1]):
        edges.append(np.inf)
    return np.asarray(edges)


class Skip(Exception):
    """This figure cannot be drawn from the data at hand (the message says why)."""


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

    @cached_property
    def in_training(self) -> np.ndarray:
        return self.table["in_training"].to_numpy(bool)

    @cached_property
    def inside(self) -> np.ndarray:
        """Observed stars with ``flag_boundary`` all zeros (recommended, Sect. 5.2)."""
        clean = self.table["flag_boundary"].astype(str).str.fullmatch("0+").to_numpy(bool)
        return ~self.in_training & clean

    @cached_property
    def outside(self) -> np.ndarray:
        """Observed stars with at least one flag digit set."""
        return ~self.in_training & ~self.inside

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

    def read_arrays(self, sample: str, names: Sequence[str], rows: np.ndarray | None = None):
        """Datasets of the ``sample`` arrays file (rows in file order); :class:`Skip` if one
        is absent."""
        path = self.arrays_file(sample)
        out = {}
        with h5py.File(path, "r") as h5:
            for n in names:
                if n not in h5:
                    raise Skip(f"{path.name} has no dataset {n}")
                out[n] = h5[n][:] if rows is None else h5[n][np.sort(rows)]
        return out

    def catalogue_rows(self, sample: str) -> np.ndarray:
        """Row in :attr:`table` of each star of the ``sample`` arrays file, in file order."""
        with h5py.File(self.arrays_file(sample), "r") as h5:
            sid = h5["source_id"][:]
        return pd.Index(self.table["source_id"].to_numpy()).get_indexer(sid)

    def wavelength_nm(self) -> np.ndarray:
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
