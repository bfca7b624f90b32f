"""Archive-shaped fixture data for :mod:`archive_server`, built from the offline demo survey.

:func:`make_archive_fixture` runs the project's own demo survey
(:func:`gaiacnn.demo.survey.generate`, the ``demo:`` section of ``config/config.yaml`` with a
small ``n_stars`` and no Cramér–Rao bounds, ~2 s) into a folder and turns its outputs into
the server's inputs:

* ``query_result``: ``gaia_source.fits`` as the selection query's answer (the
  ``gaiadr3.gaia_source`` columns + ``classlabel_espels`` of the LEFT JOIN with
  ``gaiadr3.astrophysical_parameters``, masked where a star has no AP row; strings as
  ``str``); ``radial_velocity_error`` [km/s] masked (null) for one star
  (``no_rv_error_id``);
* ``rvs``: ``{source_id: (flux[2401], flux_error[2401])}`` float32 from ``rvs_xp.h5`` (NaN
  edge pixels for some stars, as in DR3);
* ``xp``: ``{source_id: (bp[55] or None, rp[55])}`` float64; one star (``rp_only_id``) has
  RP only, like DR3 5405570973190252288, and one (``no_xp_id``) has no XP product at all
  (``has_xp_continuous`` False);
* ``allstar``: the demo's APOGEE allStar-like FITS (duplicates, flagged rows, rows with no
  Gaia match).

:func:`write_allstar` writes a small allStar-like FITS for explicit source ids, with one row
of each case the cuts must handle.
"""

from __future__ import annotations

import copy
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import yaml
from archive_server import ArchiveServer
from astropy.table import MaskedColumn, Table

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SEED = 20240117

#: ASPCAPFLAG / EXTRATARG bits (ARCHIVE_NOTES).
STAR_WARN = 1 << 7
STAR_BAD = 1 << 23
SN_WARN = 1 << 11
EXTRATARG_DUPLICATE = 1 << 4
ALLSTAR_LABELS = ("TEFF", "LOGG", "M_H", "ALPHA_M", "FE_H")


@dataclass(frozen=True)
class ArchiveFixture:
    """Inputs of an :class:`ArchiveServer` and the truth to compare a client's output with."""

    query_result: Table
    rvs: dict[int, tuple[np.ndarray, np.ndarray]]
    xp: dict[int, tuple[np.ndarray | None, np.ndarray]]
    #: the coefficients' 1 sigma errors [e-/s], as ``xp`` (None for a missing band)
    xp_errors: dict[int, tuple[np.ndarray | None, np.ndarray]]
    wavelength: np.ndarray
    allstar: Path
    folder: Path
    rp_only_id: int
    no_xp_id: int
    nan_edge_ids: tuple[int, ...]
    #: a star with XP whose radial_velocity_error is null in the archive's answer
    no_rv_error_id: int

    @property
    def source_ids(self) -> np.ndarray:
        """Source ids of the query result, in order (int64)."""
        return np.asarray(self.query_result["source_id"], dtype=np.int64)

    def server(self, **kwargs: Any) -> ArchiveServer:
        """An (unstarted) :class:`ArchiveServer` serving this fixture; ``allStar.fits`` too."""
        files = {"allStar.fits": self.allstar, **kwargs.pop("files", {})}
        return ArchiveServer(
            query_result=self.query_result,
            rvs=self.rvs,
            xp=self.xp,
            xp_errors=self.xp_errors,
            wavelength=self.wavelength,
            files=files,
            **kwargs,
        )


def demo_config(
    n: int = 300, seed: int = DEFAULT_SEED, config_path: str | Path | None = None
) -> dict[str, Any]:
    """The ``demo:`` section of the project config, sized down for tests."""
    path = Path(config_path) if config_path is not None else REPO / "config" / "config.yaml"
    with open(path, encoding="utf-8") as fh:
        cfg = copy.deepcopy(yaml.safe_load(fh)["demo"])
    cfg.update(n_stars=int(n), chunk_size=int(n), seed=int(seed), crlb_inputs=[])
    return cfg


def _gaia_table(path: Path) -> Table:
    """``gaia_source.fits`` as the archive would answer it: native-endian numbers, str columns,
    ``classlabel_espels`` masked where a star has no AP row."""
    table = Table.read(path)
    table.meta.clear()
    for name in table.colnames:
        col = table[name]
        if col.dtype.kind == "S":
            values = col.filled(b"") if isinstance(col, MaskedColumn) else col
            text = np.char.strip(np.char.decode(np.asarray(values), "ascii"))
            if name == "classlabel_espels":
                table[name] = MaskedColumn(text, mask=text == "")
            else:
                table[name] = text
        elif col.dtype.byteorder == ">":
            table[name] = col.astype(col.dtype.newbyteorder("="))  # FITS is big-endian
    return table


def make_archive_fixture(
    n: int = 300,
    seed: int = DEFAULT_SEED,
    folder: str | Path | None = None,
    *,
    config_path: str | Path | None = None,
) -> ArchiveFixture:
    """Run the demo survey (``n`` stars, ``seed``) into ``folder`` and shape it for the server.

    ``folder`` defaults to a new temporary directory (not removed).  The RP-only and
    no-XP stars are drawn from the stars with XP coefficients with ``seed``.
    """
    from gaiacnn.demo import survey

    out = Path(folder) if folder is not None else Path(tempfile.mkdtemp(prefix="archive_fixture_"))
    out.mkdir(parents=True, exist_ok=True)
    paths = survey.default_paths(out)
    survey.generate(
        demo_config(n, seed, config_path),
        paths["gaia_source"],
        paths["allstar"],
        paths["raw"],
        paths["truth"],
        progress=False,
    )
    table = _gaia_table(paths["gaia_source"])
    with h5py.File(paths["raw"], "r") as h5:
        ids = h5["source_id"][:].astype(np.int64)
        flux = h5["rvs/flux"][:]
        flux_error = h5["rvs/flux_error"][:]
        wavelength = np.asarray(h5["rvs/flux"].attrs["wavelength_nm"], dtype=np.float64)
        bp = h5["xp/bp_coefficients"][:].astype(np.float64)
        rp = h5["xp/rp_coefficients"][:].astype(np.float64)
        bp_err = h5["xp/bp_coefficient_errors"][:].astype(np.float64)
        rp_err = h5["xp/rp_coefficient_errors"][:].astype(np.float64)
    if not np.array_equal(ids, np.asarray(table["source_id"], dtype=np.int64)):
        raise RuntimeError("demo survey: gaia_source and rvs_xp.h5 disagree on the stars")
    rvs = {int(i): (flux[k], flux_error[k]) for k, i in enumerate(ids)}
    has_xp = ~(np.isnan(bp).any(axis=1) | np.isnan(rp).any(axis=1))
    xp: dict[int, tuple[np.ndarray | None, np.ndarray]] = {
        int(i): (bp[k], rp[k]) for k, i in enumerate(ids) if has_xp[k]
    }
    rng = np.random.default_rng(seed)
    rp_only, no_xp = (int(i) for i in rng.choice(ids[has_xp], size=2, replace=False))
    xp_errors = {int(i): (bp_err[k], rp_err[k]) for k, i in enumerate(ids) if has_xp[k]}
    xp[rp_only] = (None, xp[rp_only][1])
    xp_errors[rp_only] = (None, xp_errors[rp_only][1])
    del xp_errors[no_xp]
    del xp[no_xp]
    table["has_xp_continuous"][table["source_id"] == no_xp] = False
    # a null radial_velocity_error (NaN under the mask: what the VOTable reads back)
    others = ids[has_xp & ~np.isin(ids, [rp_only, no_xp])]
    no_rv_error = int(rng.choice(others))
    rv_error = np.asarray(table["radial_velocity_error"], dtype=np.float32).copy()
    null = np.asarray(table["source_id"], dtype=np.int64) == no_rv_error
    rv_error[null] = np.nan
    table["radial_velocity_error"] = MaskedColumn(rv_error, mask=null, unit="km / s")
    nan_edge = tuple(int(i) for i, f in zip(ids, flux, strict=True) if np.isnan(f[[0, -1]]).any())
    return ArchiveFixture(
        query_result=table,
        rvs=rvs,
        xp=xp,
        xp_errors=xp_errors,
        wavelength=wavelength,
        allstar=paths["allstar"],
        folder=out,
        rp_only_id=rp_only,
        no_xp_id=no_xp,
        nan_edge_ids=nan_edge,
        no_rv_error_id=no_rv_error,
    )


def write_allstar(path: str | Path, source_ids: Sequence[int], seed: int = 0) -> Table:
    """A small APOGEE DR17 allStar-like FITS (HDU1) with a row per id plus edge cases.

    With at least 6 ids, row ``k`` of ``source_ids`` is: 0 a good star (and a second row,
    EXTRATARG DUPLICATE, sharing its Gaia id), 1 STAR_BAD, 2 STAR_WARN, 3 NaN labels (failed
    fit), 4 FE_H_FLAG set, 5 low SNR with SN_WARN; every row also gets a harmless bit 40 in
    ASPCAPFLAG at random (64-bit cleanliness).  A last row has ``GAIAEDR3_SOURCE_ID`` 0 (no
    Gaia match).  Returns the table written.
    """
    from gaiacnn.tables import write_fits_table

    rng = np.random.default_rng(seed)
    ids = np.asarray(list(source_ids), dtype=np.int64)
    gaia_ids = np.concatenate([ids, ids[:1], np.zeros(1, np.int64)])
    m = gaia_ids.size
    cols: dict[str, np.ndarray] = {
        "APOGEE_ID": np.array(
            [f"2M{rng.integers(0, 10**8):08d}+{rng.integers(0, 10**7):07d}" for _ in range(m)]
        ),
        "GAIAEDR3_SOURCE_ID": gaia_ids,
        "SNR": rng.uniform(80.0, 400.0, m).astype(np.float32),
        "EXTRATARG": np.zeros(m, np.int32),
        "ASPCAPFLAG": np.zeros(m, np.int64),
        "ASPCAP_CHI2": rng.uniform(1.0, 10.0, m).astype(np.float32),
        "FE_H_FLAG": np.zeros(m, np.int32),
    }
    centre = {"TEFF": (4800.0, 400.0), "LOGG": (2.8, 0.6), "M_H": (-0.2, 0.3)}
    centre |= {"ALPHA_M": (0.08, 0.08), "FE_H": (-0.2, 0.3)}
    errors = {"TEFF": 60.0, "LOGG": 0.05, "M_H": 0.02, "ALPHA_M": 0.02, "FE_H": 0.02}
    for label in ALLSTAR_LABELS:
        mu, sigma = centre[label]
        cols[label] = rng.normal(mu, sigma, m).astype(np.float32)
        cols[f"{label}_ERR"] = (errors[label] * rng.uniform(0.8, 1.5, m)).astype(np.float32)
    n = ids.size
    cols["EXTRATARG"][n] |= EXTRATARG_DUPLICATE
    if n > 1:
        cols["ASPCAPFLAG"][1] |= STAR_BAD
    if n > 2:
        cols["ASPCAPFLAG"][2] |= STAR_WARN
    if n > 3:
        for label in ALLSTAR_LABELS:
            cols[label][3] = np.nan
            cols[f"{label}_ERR"][3] = np.nan
    if n > 4:
        cols["FE_H_FLAG"][4] = 1
    if n > 5:
        cols["SNR"][5] = 40.0
        cols["ASPCAPFLAG"][5] |= SN_WARN
    cols["ASPCAPFLAG"][rng.random(m) < 0.3] |= np.int64(1 << 40)
    write_fits_table(cols, path, units={"TEFF": "K", "TEFF_ERR": "K"})
    return Table(cols)
