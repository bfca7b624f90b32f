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
from collections.abc import Iterator, Mapping, Sequence
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
#: Rows read per block of an arrays file (a block of 4096 x 2401 float32 is ~39 MB).
CHUNK_ROWS = 4096
#: Catalogue rows read per block.
CATALOGUE_CHUNK_ROWS = 65_536
#: Observed stars the figures read at most (``figures.max_observed``): beyond, a random
#: subsample of this many (``figures.seed``) in which the stars with a reference label
#: are kept, up to half of it, so that the figures' memory does not grow with N.  Above
#: the paper's 886 080.
DEFAULT_MAX_OBSERVED = 1_000_000


def iter_selected_rows(
    ds: h5py.Dataset, rows: np.ndarray, chunk_rows: int = CHUNK_ROWS
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(i, values)``: the values of ``ds`` at ``rows[i:i + len(values)]``, block by
    block of ``chunk_rows`` file rows.  ``rows``: sorted unique indices.  A dense block is
    read as one slab, a sparse one by point selection; memory ~ ``chunk_rows`` rows."""
    rows = np.asarray(rows, dtype=np.int64)
    if rows.size and (np.any(np.diff(rows) <= 0) or rows[0] < 0 or rows[-1] >= ds.shape[0]):
        raise ValueError("rows must be sorted, unique and within the dataset")
    n = ds.shape[0]
    for block in np.unique(rows // chunk_rows):
        start = int(block) * chunk_rows
        stop = min(start + chunk_rows, n)
        lo, hi = np.searchsorted(rows, [start, stop])
        sel = rows[lo:hi]
        if 8 * sel.size >= stop - start:  # dense: one contiguous read
            yield int(lo), ds[start:stop][sel - start]
        else:
            yield int(lo), ds[sel]


def read_rows(
    path: str | os.PathLike, names: Sequence[str], rows: np.ndarray, chunk_rows: int = CHUNK_ROWS
) -> dict[str, np.ndarray]:
    """Datasets ``names`` of an arrays file at sorted unique ``rows`` (in that order),
    streamed; :class:`Skip` if one is absent."""
    rows = np.asarray(rows, dtype=np.int64)
    out: dict[str, np.ndarray] = {}
    with h5py.File(path, "r") as h5:
        for name in names:
            if name not in h5:
                raise Skip(f"{Path(path).name} has no dataset {name}")
            ds = h5[name]
            res = np.empty((rows.size, *ds.shape[1:]), dtype=ds.dtype)
            for i, values in iter_selected_rows(ds, rows, chunk_rows):
                res[i : i + len(values)] = values
            out[name] = res
    return out


def snr_edges(cfg: Mapping) -> np.ndarray:
    """S/N bin edges of the figures from ``cfg["snr_edges"]`` (the configured
    ``evaluation.snr_edges``; default 15, 25, 35, 75, Sect. 4.2, 4.5), last bin open (inf)."""
    edges = [float(x) for x in cfg.get("snr_edges", DEFAULT_SNR_EDGES)]
    if np.isfinite(edges[-1]):
        edges.append(np.inf)
    return np.asarray(edges)


class Skip(Exception):
    """This figure cannot be drawn from the data at hand (the message says why)."""


#: Why a figure of the training sample is not drawn in a run from a bundle.
NO_TRAINING = (
    "no training sample: a run from a bundle (ensemble.bundle) predicts the observed sample "
    "only; the training sample's figures are the bundle's run's"
)


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
    training: Path | None  # None: a run from a bundle (ensemble.bundle) has no training sample
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
        if self.observed_subsample is None:
            return catalogue.read(self.inputs.catalogue)
        return self._read_subsample(), catalogue.read_attrs(self.inputs.catalogue)

    @cached_property
    def n_observed(self) -> int:
        """Stars of the observed arrays file (all of them, read or not)."""
        with h5py.File(self.inputs.observed, "r") as h5:
            return int(h5["source_id"].shape[0])

    @cached_property
    def observed_subsample(self) -> np.ndarray | None:
        """Rows of the observed arrays file the figures read, sorted, when it holds more
        than ``figures.max_observed`` stars (:data:`DEFAULT_MAX_OBSERVED`): that many at
        random (``figures.seed``), among them every star with a reference label, up to half
        of them (a random half's worth where there are more); None when the figures read
        them all."""
        cap = int(self.cfg.get("max_observed", DEFAULT_MAX_OBSERVED))
        n = self.n_observed
        if n <= cap:
            return None
        rng = np.random.default_rng([int(self.cfg.get("seed", 0)), 8])
        labelled = np.zeros(n, bool)  # 1 byte a star
        with h5py.File(self.inputs.observed, "r") as h5:
            names = [x for x in h5.get("labels", {}) if not x.endswith("_err")]
            for start in range(0, n, CATALOGUE_CHUNK_ROWS):
                stop = min(n, start + CATALOGUE_CHUNK_ROWS)
                for name in names:
                    labelled[start:stop] |= np.isfinite(h5[f"labels/{name}"][start:stop])
        rows = np.flatnonzero(labelled)
        if rows.size > cap // 2:
            rows = rng.choice(rows, size=cap // 2, replace=False)
        others = np.flatnonzero(~labelled)
        others = rng.choice(others, size=min(others.size, cap - rows.size), replace=False)
        return np.sort(np.r_[rows, others]).astype(np.int64)

    def _read_subsample(self) -> pd.DataFrame:
        """The catalogue's training stars and its observed stars at the rows
        :attr:`observed_subsample` of the observed arrays file, read a block at a time.
        The catalogue holds the training stars, then the observed ones, each in the order
        of its arrays file (as the workflow writes it); a catalogue in another order is
        refused (its file rows could not be found without reading every source id)."""
        from gaiacnn.tables import iter_fits_rows

        keep = self.observed_subsample
        parts, n_seen = [], {True: 0, False: 0}
        for chunk in iter_fits_rows(self.inputs.catalogue, CATALOGUE_CHUNK_ROWS):
            is_tr = chunk["in_training"].to_numpy(bool)
            pos = np.empty(len(chunk), np.int64)
            for flag in (True, False):
                m = is_tr == flag
                pos[m] = n_seen[flag] + np.arange(int(m.sum()))
                n_seen[flag] += int(m.sum())
            i = np.minimum(np.searchsorted(keep, pos), keep.size - 1)
            parts.append(chunk[is_tr | (keep[i] == pos)])
        table = pd.concat(parts, ignore_index=True)
        if n_seen[False] != self.n_observed:
            raise ValueError(
                f"{self.inputs.catalogue}: {n_seen[False]} observed stars, the observed arrays "
                f"file {self.inputs.observed} {self.n_observed}: not its catalogue"
            )
        sid = table["source_id"].to_numpy()
        mask = table["in_training"].to_numpy(bool)
        if "training" in self.samples:
            self._check_order("training", np.arange(int(mask.sum())), sid[mask])
        self._check_order("observed", keep, sid[~table["in_training"].to_numpy(bool)])
        return table

    def _check_order(self, sample: str, rows: np.ndarray, sid: np.ndarray) -> None:
        file_sid = read_rows(self.arrays_file(sample), ["source_id"], rows)["source_id"]
        bad = np.flatnonzero(file_sid != sid)
        if bad.size:
            raise ValueError(
                f"{self.inputs.catalogue}: its {sample} star {sid[bad[0]]} stands where row "
                f"{rows[bad[0]]} of {self.arrays_file(sample)} holds {file_sid[bad[0]]}: the "
                f"figures read a catalogue of more than figures.max_observed observed stars "
                "in the order of its arrays files (training stars, then observed ones), as "
                "the workflow writes it"
            )

    def sample_note(self) -> str:
        """Caption note when the figures read a subsample of the observed stars (empty
        otherwise)."""
        keep = self.observed_subsample
        if keep is None:
            return ""
        cap = int(self.cfg.get("max_observed", DEFAULT_MAX_OBSERVED))
        return (
            f" Observed stars: a random {keep.size:,} of the {self.n_observed:,} "
            f"(figures.max_observed {cap:,}; those with a reference label kept, up to half of "
            "them); the counts and fractions are of these."
        )

    @property
    def table(self) -> pd.DataFrame:
        """The catalogue (training stars first, then observed), one row per star; beyond
        ``figures.max_observed`` observed stars, those of :attr:`observed_subsample`."""
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
        for sample in self.samples:
            names = [x for x in self.labels if self.has(layout.label_dataset(x), sample=sample)]
            file_rows, rows = self.file_rows(sample)
            values = read_rows(
                self.arrays_file(sample), [layout.label_dataset(x) for x in names], file_rows
            )
            for name in names:
                if name not in out:
                    out[name] = np.nan
                out.loc[rows, name] = values[layout.label_dataset(name)]
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
        """The ``sample`` arrays file; :class:`Skip` for a training sample the run has not
        (a run from a bundle, :data:`NO_TRAINING`)."""
        if sample == "training" and self.inputs.training is None:
            raise Skip(NO_TRAINING)
        return Path(self.inputs.training if sample == "training" else self.inputs.observed)

    @property
    def samples(self) -> tuple[str, ...]:
        """The samples whose arrays the run has: training (but for a run from a bundle)
        and observed."""
        return ("observed",) if self.inputs.training is None else ("training", "observed")

    @cached_property
    def _datasets(self) -> dict[str, frozenset[str]]:
        out = {"training": frozenset()}
        for sample in self.samples:
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
        self.arrays_file(sample)  # a run without a training sample says so
        if not self.has(name, sample=sample):
            raise missing_input(what or name)

    def read_arrays(self, sample: str, names: Sequence[str], rows: np.ndarray | None = None):
        """Datasets of the ``sample`` arrays file (rows in file order; ``rows``: sorted
        unique file rows); :class:`Skip` if one is absent."""
        path = self.arrays_file(sample)
        if rows is None:
            with h5py.File(path, "r") as h5:
                rows = np.arange(int(h5["source_id"].shape[0]))
        missing = [n for n in names if not self.has(n, sample=sample)]
        if missing:
            raise missing_input(missing[0], f"{path.name} has no dataset {missing[0]}")
        return read_rows(path, names, np.sort(rows))

    def file_rows(self, sample: str) -> tuple[np.ndarray, np.ndarray]:
        """(rows of the ``sample`` arrays file, their rows in :attr:`table`) of the stars in
        both, sorted by file row."""
        return self._file_rows[sample]

    @cached_property
    def _file_rows(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        out = {}
        is_tr = self.table["in_training"].to_numpy(bool)
        if self.observed_subsample is not None:  # checked by _read_subsample
            n_tr = int(is_tr.sum())
            out["training"] = (np.arange(n_tr), np.flatnonzero(is_tr))
            out["observed"] = (self.observed_subsample, np.flatnonzero(~is_tr))
            return out
        sid = pd.Index(self.table["source_id"].to_numpy())
        out["training"] = (np.empty(0, np.int64), np.empty(0, np.int64))
        for sample in self.samples:
            with h5py.File(self.arrays_file(sample), "r") as h5:
                rows = sid.get_indexer(h5["source_id"][:])
            found = np.flatnonzero(rows >= 0)
            out[sample] = (found, rows[found])
        return out

    def wavelength_nm(self) -> np.ndarray:
        sample = self.samples[0]
        self.require(RVS_FLUX_DATASET, sample)
        return layout.wavelength_nm(self.arrays_file(sample))

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
    for name in layout.PHOT_DATASETS:
        out[name.split("/")[1]] = np.nan
    for sample in ("training", "observed"):
        names = [n for n in layout.PHOT_DATASETS if ctx.has(n, sample=sample)]
        file_rows, rows = ctx.file_rows(sample)
        values = read_rows(ctx.arrays_file(sample), names, file_rows)
        for name in names:
            out.loc[rows, name.split("/")[1]] = values[name]
    return out
