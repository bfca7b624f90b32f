"""A trained ensemble as one directory to share: its members, the input contract, the
uncertainty model, the boundary flag's limits and what the training-like classification
knows, with a model card and a manifest of SHA-256 sums (rule ``export_bundle``,
``gaiacnn export``); and the catalogue of any observed file from it, without Snakemake
(``gaiacnn predict``).

A bundle directory holds:

* ``bundle.json``: the format and its version (:data:`FORMAT`, :data:`VERSION`), the
  provenance (package version, commit, date, the training file's name, rows and SHA-256,
  the configuration hash) and the contract (labels, members, branches, XP and photometry
  forms, the flag's digits);
* ``members/<name>/model.keras`` and ``scalers.json`` (the input grids, branches, labels
  and scaler statistics), loaded in Keras' safe mode;
* ``uncertainty_model.json``: the running-dispersion fits, the S/N calibration and the
  effective training limits (Table 1) behind ``sigma_*`` and the boundary flag;
* ``input_space.npz``: the training stars' (BP-RP, M_G, log10 parallax S/N) behind the
  input-space digit, plain arrays;
* ``training_like.h5``: the run's t-SNE classes of its observed stars, keyed by
  ``source_id`` and a hash of the spectrum embedded (only the same star with the same
  spectrum gets its class back);
* ``tsne/r<k>/index.npz`` and ``tsne/r<k>/p<perplexity>.h5`` (format 1.1): per set of
  maps, the reference spectra's neighbour index (PCA) and their positions in each map with
  the map's training stars and threshold, to place the spectra of other stars into the
  maps and classify them (:class:`gaiacnn.tsne.PlacementSet`);
* ``config.yaml``: the resolved configuration of the run;
* ``MODEL_CARD.md``: the training sample, the precision per label, the coverage of
  ``sigma_*``, the intended use and the known limits;
* ``MANIFEST.sha256``: ``<sha256>  <path>`` of every other file (``sha256sum -c`` reads it).

Loading (:func:`load`) runs no code: JSON, plain HDF5 and npz arrays, and ``.keras`` in safe
mode; a file whose SHA-256 differs from the manifest's, a file the manifest does not list
and a bundle of a newer major version are refused, naming the file or the versions.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import itertools
import json
import logging
import os
import shutil
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from gaiacnn.provenance import git_commit, sha256_file

log = logging.getLogger(__name__)

#: The bundle format's name (``bundle.json``'s ``format``).
FORMAT = "gaiacnn-ensemble-bundle"
#: Its version, major.minor: a reader refuses a newer major (the layout changed), and reads
#: a newer minor of its own major (additions it may ignore).
VERSION = "1.1"
INFO_FILE = "bundle.json"
MANIFEST_FILE = "MANIFEST.sha256"
MODEL_CARD_FILE = "MODEL_CARD.md"
UNCERTAINTY_FILE = "uncertainty_model.json"
INPUT_SPACE_FILE = "input_space.npz"
TRAINING_LIKE_FILE = "training_like.h5"
CONFIG_FILE = "config.yaml"
#: The placement sets' directory (``tsne/r0``, ``tsne/r1`` ...).
PLACEMENT_DIR = "tsne"
#: Observed stars of the run whose placement is checked against their classes at export.
PLACEMENT_CHECK_STARS = 2000
#: Files a bundle may hold outside its manifest: Snakemake's marker of a directory output
#: (empty; the rule export_bundle's output gets one).
NOT_LISTED = (".snakemake_timestamp",)
#: A member's files in the bundle (``members/<name>/``).
MEMBER_FILES = ("model.keras", "scalers.json")


class BundleError(ValueError):
    """A bundle that cannot be used (tampered, incomplete, of a newer version)."""


def spectrum_hashes(*blocks: np.ndarray) -> np.ndarray:
    """(n,) uint64: a 64-bit BLAKE2b digest of each star's rows of ``blocks`` (the
    datasets of the spectra the t-SNE maps embed, e.g. ``rvs/flux``, or the BP and RP
    coefficients) as float32 bytes: the key, with ``source_id``, under which a bundle keeps
    a star's t-SNE class."""
    rows = [np.ascontiguousarray(np.asarray(b, dtype=np.float32)) for b in blocks]
    out = np.empty(len(rows[0]), np.uint64)
    for i in range(len(out)):
        h = hashlib.blake2b(digest_size=8)
        for b in rows:
            h.update(b[i].tobytes())
        out[i] = int.from_bytes(h.digest(), "little")
    return out


def _spectra_hashes(h5, spectra: str, start: int, stop: int, path) -> np.ndarray:
    """:func:`spectrum_hashes` of rows ``start:stop`` of an open arrays file, a block of
    :data:`HASH_ROWS` at a time; the datasets of ``spectra`` (``tsne.spectra``)."""
    from gaiacnn.tsne.features import _datasets

    names = _datasets(spectra)
    for name in names:
        if name not in h5:
            raise BundleError(f"{path}: no {name}, which the t-SNE maps embed ({spectra})")
    out = np.empty(stop - start, np.uint64)
    for lo in range(start, stop, HASH_ROWS):
        hi = min(stop, lo + HASH_ROWS)
        out[lo - start : hi - start] = spectrum_hashes(*(h5[n][lo:hi] for n in names))
    return out


def _major(version: str) -> int:
    try:
        return int(str(version).split(".")[0])
    except ValueError:
        raise BundleError(f"bundle version {version!r}: not major.minor") from None


# ---------------------------------------------------------------------------- loading
@dataclass(frozen=True)
class Bundle:
    """A verified bundle directory (:func:`load`)."""

    path: Path
    info: dict

    @property
    def members(self) -> list[str]:
        return list(self.info["members"])

    @property
    def labels(self) -> list[str]:
        return list(self.info["labels"])

    def member_dirs(self) -> list[Path]:
        return [self.path / "members" / m for m in self.members]

    def file(self, name: str) -> Path:
        return self.path / name


def read_manifest(path: Path) -> dict[str, str]:
    """``{relative path: sha256}`` of a bundle's manifest; a malformed line refused."""
    out = {}
    text = (path / MANIFEST_FILE).read_text(encoding="utf-8")
    for k, line in enumerate(text.splitlines(), 1):
        digest, sep, name = line.partition("  ")
        if not sep or len(digest) != 64 or not name or name.startswith("/") or ".." in name:
            raise BundleError(f"{path / MANIFEST_FILE}: line {k} is not '<sha256>  <path>'")
        out[name] = digest
    return out


def _files(root: Path) -> Iterator[str]:
    for dirpath, _, names in os.walk(root):
        for n in names:
            yield (Path(dirpath) / n).relative_to(root).as_posix()


def load(path: str | os.PathLike) -> Bundle:
    """The bundle at ``path``, every file checked against its manifest first: a file
    whose SHA-256 differs, one the manifest lists but the bundle lacks and one it holds
    but the manifest does not list are refused, naming it; so is a bundle of another
    format or of a newer major version.  Nothing read runs code."""
    from gaiacnn.io import read_json

    root = Path(path)
    if not (root / MANIFEST_FILE).is_file():
        raise BundleError(f"{root}: no {MANIFEST_FILE}: not an ensemble bundle")
    listed = read_manifest(root)
    present = set(_files(root)) - {MANIFEST_FILE}
    for name in NOT_LISTED:
        if name in present and (root / name).stat().st_size == 0:
            present.discard(name)
    for name in sorted(present - set(listed)):
        raise BundleError(f"{root / name}: not in {MANIFEST_FILE} (added after the export?)")
    for name in sorted(set(listed) - present):
        raise BundleError(f"{root / name}: in {MANIFEST_FILE} but missing")
    for name, digest in sorted(listed.items()):
        got = sha256_file(root / name)
        if got != digest:
            raise BundleError(
                f"{root / name}: SHA-256 {got} differs from the manifest's {digest}: "
                "the file changed after the export"
            )
    info = read_json(root / INFO_FILE, "a bundle's bundle.json", ["format", "version"])
    if info["format"] != FORMAT:
        raise BundleError(f"{root}: format {info['format']!r}, not {FORMAT!r}")
    if _major(info["version"]) > _major(VERSION):
        raise BundleError(
            f"{root}: a bundle of format version {info['version']}, made by a newer gaiacnn "
            f"(gaiacnn {info.get('gaiacnn_version', '?')}); this gaiacnn reads versions "
            f"{_major(VERSION)}.x: upgrade gaiacnn to use it"
        )
    for key in ("members", "labels", "branches"):
        if key not in info:
            raise BundleError(f"{root / INFO_FILE}: no {key}")
    return Bundle(root, info)


# ---------------------------------------------------------------------------- export
def _input_space_features(training_arrays) -> np.ndarray | None:
    """The training stars' input-space features, or None where the arrays lack one."""
    from gaiacnn import catalogue, flags

    n = catalogue._n_stars(training_arrays)
    inputs = {
        c: catalogue._optional(training_arrays, name, n)
        for c, name in zip(flags.INPUT_SPACE_COLUMNS, catalogue.INPUT_SPACE_DATASETS, strict=True)
    }
    if not all(np.isfinite(v).any() for v in inputs.values()):
        return None
    return flags.input_space_features(inputs)


def _known_classes(tsne_file, observed_arrays, tmp_out) -> dict:
    """The run's t-SNE classes keyed by (source_id, spectrum hash), as plain HDF5, into
    ``tmp_out`` (a file of the bundle's temporary directory, :func:`export`)."""
    from gaiacnn.io import open_h5

    with open_h5(tsne_file) as t, open_h5(observed_arrays) as a, h5py.File(tmp_out, "w") as o:
        spectra = str(t.attrs.get("spectra", "rvs/flux"))
        n = int(t["source_id"].shape[0])
        if a["source_id"].shape[0] != n:
            raise BundleError(f"{tsne_file} and {observed_arrays} hold different stars")
        names = [k for k in t if k.startswith("training_like")]
        o["source_id"] = t["source_id"][:]
        o.create_dataset("spectrum_hash", (n,), np.uint64)
        for k in names:
            o[k] = t[k][:]
        if not np.array_equal(a["source_id"][:], o["source_id"][:]):
            raise BundleError(f"{tsne_file} and {observed_arrays} hold different stars")
        o["spectrum_hash"][...] = _spectra_hashes(a, spectra, 0, n, observed_arrays)
        for k, v in t.attrs.items():
            o.attrs[k] = v
        return {
            "spectra": spectra,
            "known_stars": n,
            "perplexities": [float(p) for p in t.attrs.get("perplexities", [])],
            "maps_per_perplexity": int(t.attrs.get("maps_per_perplexity", 1)),
        }


def _map_sets(map_files: Sequence) -> list[list]:
    """The classifying maps grouped into sets (one map per perplexity each), by seed."""
    sets: dict[int, list] = {}
    for path in map_files:
        with h5py.File(path, "r") as h5:
            sets.setdefault(int(h5.attrs.get("seed", 0)), []).append(path)
    return list(sets.values())


def _placement(map_files, training_arrays, observed_arrays, tsne_file, tsne_cfg, tmp) -> dict:
    """Write the placement sets of the run's maps into ``tmp/tsne/r<k>/`` (a bundle's
    temporary directory) and check them: a random :data:`PLACEMENT_CHECK_STARS` of the
    run's observed reference stars, each placed leaving itself out of the neighbours, get
    the run's class how often (the agreement the model card reports)."""
    from gaiacnn import tsne
    from gaiacnn.tsne.features import read_spectra
    from gaiacnn.tsne.placement import _read_rows

    sets, own_rows, info = [], [], []
    for k, files in enumerate(_map_sets(map_files)):
        pset, obs_rows = tsne.placement_set_from_maps(
            files, training_arrays, observed_arrays, tsne_cfg
        )
        d = tmp / PLACEMENT_DIR / f"r{k}"
        d.mkdir(parents=True)
        tsne.write_index(d / "index.npz", pset.index)
        for m in pset.maps:
            tsne.write_reference_embedding(d / f"p{m.perplexity:g}.h5", m)
        sets.append(pset)
        own_rows.append((obs_rows, pset.maps[0].n_training))
        info.append(
            {"dir": f"{PLACEMENT_DIR}/r{k}", "reference_training": pset.maps[0].n_training,
             "reference_observed": int(obs_rows.size), "pca_components": int(
                 pset.index.features.shape[1])}
        )  # fmt: skip
    pool = np.unique(np.concatenate([r for r, _ in own_rows]))
    rng = np.random.default_rng(int(tsne_cfg["seed"]))
    check = np.sort(rng.choice(pool, min(PLACEMENT_CHECK_STARS, pool.size), replace=False))
    own = []
    for obs_rows, n_tr in own_rows:
        pos = np.searchsorted(obs_rows, check)
        hit = obs_rows[np.minimum(pos, obs_rows.size - 1)] == check
        own.append(np.where(hit, n_tr + pos, -1))
    x = read_spectra(observed_arrays, check, spectra=sets[0].spectra)
    like, per_perp = tsne.placed_training_like(sets, x, tsne_cfg, own)
    with h5py.File(tsne_file, "r") as h5:
        # the checked rows only, a block at a time (not the whole columns)
        run = {k: _read_rows(h5[k], 0, check) for k in h5 if k.startswith("training_like")}
    agree = {
        f"p{p:g}": float(np.mean(v == run[f"training_like_p{p:g}"])) for p, v in per_perp.items()
    }
    overall = float(np.mean(like == run["training_like"]))
    log.info("placement check: %d stars get the run's class for %.3f", check.size, overall)
    return {
        "sets": info,
        "place_neighbours": int(tsne_cfg["place_neighbours"]),
        "place_perplexity": float(tsne_cfg["place_perplexity"]),
        "place_n_iter": int(tsne_cfg["place_n_iter"]),
        "check": {
            "stars": int(check.size),
            "agreement": overall,
            "agreement_per_perplexity": agree,
            "training_like_run": float(np.mean(run["training_like"])),
            "training_like_placed": float(np.mean(like)),
        },
    }


def export(
    out_dir,
    *,
    member_dirs: Sequence[str | os.PathLike],
    uncertainty_model,
    training_arrays,
    observed_arrays,
    tsne_file,
    map_files: Sequence[str | os.PathLike],
    catalogue_fits,
    config: Mapping,
    config_hash: str,
    labels: Sequence[str],
    input_neighbours: int,
    input_quantile: float,
    input_digit: bool,
) -> Bundle:
    """Write the bundle of a finished run into ``out_dir`` (replaced atomically: the
    directory appears whole or not at all) and return it, loaded back."""
    import yaml

    from gaiacnn import __version__, ensemble, flags
    from gaiacnn.io import atomic_directory

    members = [Path(d) for d in member_dirs]
    names = [d.name for d in members]
    scalers = [json.loads((d / "scalers.json").read_text(encoding="utf-8")) for d in members]
    with atomic_directory(out_dir) as tmp:
        for d in members:
            (tmp / "members" / d.name).mkdir(parents=True)
            for f in MEMBER_FILES:
                shutil.copyfile(d / f, tmp / "members" / d.name / f)
        shutil.copyfile(uncertainty_model, tmp / UNCERTAINTY_FILE)
        features = _input_space_features(training_arrays)
        if features is not None:
            with open(tmp / INPUT_SPACE_FILE, "wb") as fh:
                np.savez(fh, features=features)
        tsne = _known_classes(tsne_file, observed_arrays, tmp / TRAINING_LIKE_FILE)
        tsne["placement"] = _placement(
            map_files, training_arrays, observed_arrays, tsne_file, config["tsne"], tmp
        )
        (tmp / CONFIG_FILE).write_text(yaml.safe_dump(dict(config), sort_keys=False))
        with h5py.File(training_arrays, "r") as h5:
            n_training = int(h5["source_id"].shape[0])
        info = {
            "format": FORMAT,
            "version": VERSION,
            "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "gaiacnn_version": __version__,
            "commit": git_commit(),
            "config_hash": config_hash,
            "training_file": {
                "name": Path(training_arrays).name,
                "sha256": sha256_file(training_arrays),
                "n_rows": n_training,
            },
            "labels": list(labels),
            "members": names,
            "branches": list(scalers[0].get("branches", [])),
            "xp_input": scalers[0].get("xp_input"),
            "phot_input": scalers[0].get("phot_input"),
            # drawn again at prediction: the calibration was fitted with it
            "input_noise": ensemble.input_noise_settings(config.get("uncertainty", {})),
            "flags": {
                "digits": flags.digit_order(labels, input_digit),
                "input_digit": bool(input_digit),
                "input_neighbours": int(input_neighbours),
                "input_quantile": float(input_quantile),
                "input_space": features is not None,
            },
            "tsne": tsne,
        }
        (tmp / INFO_FILE).write_text(json.dumps(info, indent=1), encoding="utf-8")
        (tmp / MODEL_CARD_FILE).write_text(
            model_card(info, scalers, tmp / UNCERTAINTY_FILE, catalogue_fits, observed_arrays),
            encoding="utf-8",
        )
        lines = [f"{sha256_file(tmp / name)}  {name}" for name in sorted(_files(tmp))]
        (tmp / MANIFEST_FILE).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return load(out_dir)


def _coverage(catalogue_fits, observed_arrays, labels: Sequence[str], training_range) -> dict:
    """Per label: (stars, share with |CNN - reference| <= sigma) over the observed stars
    with a reference label inside the training limits (labels of both)."""
    from gaiacnn.layout import label_dataset
    from gaiacnn.tables import read_fits_columns

    cols = ["source_id", "in_training", *labels, *(f"sigma_{x}" for x in labels)]
    cat = read_fits_columns(catalogue_fits, cols)
    obs = cat[~cat["in_training"].to_numpy(bool)].reset_index(drop=True)
    out = {}
    with h5py.File(observed_arrays, "r") as h5:
        if not np.array_equal(h5["source_id"][:], obs["source_id"].to_numpy()):
            return {}
        ref = {x: h5[label_dataset(x)][:] for x in labels if label_dataset(x) in h5}
    inside = np.ones(len(obs), bool)
    for x, v in ref.items():
        lo, hi = training_range.get(x, (-np.inf, np.inf))
        inside &= (v >= lo) & (v <= hi)
    for x, v in ref.items():
        d = np.abs(obs[x].to_numpy(float) - v)
        s = obs[f"sigma_{x}"].to_numpy(float)
        ok = inside & np.isfinite(d) & np.isfinite(s)
        out[x] = (int(ok.sum()), float(np.mean(d[ok] <= s[ok])) if ok.any() else float("nan"))
    return out


def model_card(info: Mapping, scalers: Sequence[Mapping], uncertainty_model, catalogue_fits,
               observed_arrays) -> str:  # fmt: skip
    """The Markdown model card of a bundle."""
    from gaiacnn.constants import label_unit
    from gaiacnn.ensemble import read_uncertainty_model

    fits, training_range = read_uncertainty_model(uncertainty_model)
    cover = _coverage(catalogue_fits, observed_arrays, info["labels"], training_range)
    sc = scalers[0]
    grid = np.asarray(sc.get("rvs_wavelength_nm") or sc.get("wavelength_nm") or [], float)
    tr = info["training_file"]
    lines = [
        "# Model card: hybrid CNN ensemble (Guiglion et al. 2024, A&A 682, A9)",
        "",
        f"Bundle format {info['format']} {info['version']}, made by gaiacnn "
        f"{info['gaiacnn_version']} (commit {info['commit']}) on {info['created']}; "
        f"configuration hash {info['config_hash']}.",
        "",
        "## What it does",
        "",
        f"{len(info['members'])} members ({', '.join(info['members'])}) of the hybrid "
        "convolutional network predict, from a star's inputs, the labels "
        + ", ".join(f"{x} [{label_unit(x)}]" for x in info["labels"])
        + ". The catalogue gives their mean, the members' spread (e_*), the total "
        "uncertainty sigma_* and the boundary flag "
        f"({len(info['flags']['digits'])} digits: {', '.join(info['flags']['digits'])}).",
        "",
        "## Inputs (the contract)",
        "",
        f"- branches: {', '.join(info['branches'])}; XP input: {info['xp_input']}; "
        f"photometry input: {info['phot_input']}",
    ]
    if grid.size:
        lines.append(
            f"- RVS spectra on a grid of {grid.size} pixels, {grid[0]:.2f}-{grid[-1]:.2f} nm; "
            "a file on another grid is refused"
        )
    lines += [
        "- a file in the workflow's HDF5 layout (docs/layout.md); `gaiacnn validate` checks it",
        "",
        "## Training sample",
        "",
        f"{tr['n_rows']} stars: `{tr['name']}` (SHA-256 {tr['sha256']}). Effective "
        "training limits (Table 1), outside which the flag's digit is 1:",
        "",
        "| quantity | low | high |",
        "|---|---:|---:|",
        *(f"| {k} | {lo:.4g} | {hi:.4g} |" for k, (lo, hi) in training_range.items()),
        "",
        "## Precision and coverage",
        "",
        "Precision: the running dispersion of CNN - reference over the training sample "
        "(Sect. 3.4), its median over the label's range. Coverage: the share of the run's "
        "observed stars with a reference label inside the training limits whose "
        "|CNN - reference| is within sigma_* (68.3 % is the target).",
        "",
        "| label | unit | precision (median dispersion) | coverage stars | coverage |",
        "|---|---|---:|---:|---:|",
    ]
    for x in info["labels"]:
        disp = float(np.median(fits[x].dispersion)) if x in fits else float("nan")
        n, share = cover.get(x, (0, float("nan")))
        lines.append(f"| {x} | {label_unit(x)} | {disp:.4g} | {n} | {100 * share:.1f} % |")
    lines += [
        "",
        "## Intended use",
        "",
        "Stellar labels for stars like the training sample: FGK stars whose inputs lie "
        "inside the training limits above (flag digits all 0). Apply it to a new file with "
        "`gaiacnn predict BUNDLE OBSERVED.h5 -o catalogue.fits`.",
        "",
        "## Known limits",
        "",
        "- Outside the training limits (a flag digit 1) the labels are extrapolations.",
        "- Real samples are farther, redder and noisier than the training sample: sigma_* "
        "is calibrated against S/N and the input-space distance on the run's reference "
        "stars (docs/shift.md), not on the new file.",
        *_tsne_card(info["tsne"]),
        "- Unresolved binaries, extinction beyond the training sample's and hot or very "
        "cool stars are not in the training sample (README, docs/method.md).",
        "",
    ]
    return "\n".join(lines)


def _tsne_card(tsne: Mapping) -> list[str]:
    """The model card's lines on the t-SNE digit."""
    known = (
        f"- The t-SNE digit: the run's classes for its own {tsne['known_stars']} observed "
        "stars (same source_id and spectrum)"
    )
    place = tsne.get("placement")
    if not place:
        return [known + "; other stars get '-' (not classified) in that digit."]
    c = place["check"]
    return [
        known + "; the spectra of other stars are placed into the run's maps at the median "
        f"position of their {place['place_neighbours']} nearest reference spectra "
        f"({len(place['sets'])} set(s) of maps), as the workflow's scalable mode places "
        f"them (docs/tsne.md). Placed leaving itself out, {c['stars']} of the run's observed "
        f"stars get the run's class for {100 * c['agreement']:.1f} % of them "
        f"(training-like: {100 * c['training_like_run']:.1f} % in the run, "
        f"{100 * c['training_like_placed']:.1f} % placed).",
    ]


class _Placement:
    """A bundle's placement sets (format >= 1.1): the t-SNE classes of spectra its run did
    not embed."""

    def __init__(self, bundle: Bundle) -> None:
        from gaiacnn import tsne

        place = bundle.info["tsne"]["placement"]
        perps = [float(p) for p in bundle.info["tsne"]["perplexities"]]
        self.sets = []
        for s in place["sets"]:
            d = bundle.path / s["dir"]
            maps = [tsne.read_reference_embedding(d / f"p{p:g}.h5") for p in perps]
            self.sets.append(tsne.PlacementSet(tsne.read_index(d / "index.npz"), maps))
        self.cfg = {k: place[k] for k in ("place_neighbours", "place_perplexity", "place_n_iter")}
        self.spectra = self.sets[0].spectra

    def training_like(self, observed, rows: np.ndarray, chunk_rows: int = 10_000) -> np.ndarray:
        """Training-like in every perplexity, per star of ``rows`` (sorted) of ``observed``."""
        from gaiacnn import tsne
        from gaiacnn.tsne.features import iter_spectra

        parts = [
            tsne.placed_training_like(self.sets, x, self.cfg)[0]
            for x in iter_spectra(observed, rows, chunk_rows, self.spectra)
        ]
        return np.concatenate(parts) if parts else np.zeros(0, bool)


# ---------------------------------------------------------------------------- predict
#: Prediction settings of ``gaiacnn predict`` where the caller gives none (config
#: ``prediction``'s defaults).
PREDICTION_DEFAULTS = {
    "chunk_rows": 8192,
    "batch_size": 2048,
    "precision": "float32",
    "resample": False,
    "prefetch_chunks": 2,
}


def _aggregation(bundle: Bundle, observed, n_rows: int, prediction_file):
    """The catalogue's ingredients (:class:`gaiacnn.catalogue.Aggregation`) from the bundle,
    for ``n_rows`` stars of ``observed``."""
    from gaiacnn import catalogue, ensemble, flags
    from gaiacnn.io import read_json

    doc = read_json(bundle.file(UNCERTAINTY_FILE), "an uncertainty model", ["running_dispersion"])
    fits, training_range = ensemble.read_uncertainty_model(bundle.file(UNCERTAINTY_FILE))
    calibrations = {
        x: (ensemble.SnrCalibration(**v) if v is not None else None)
        for x, v in (doc.get("snr_calibration") or {}).items()
    }
    space = None
    fl = bundle.info["flags"]
    if fl.get("input_space"):
        from gaiacnn.io import read_npz

        arrays = read_npz(bundle.file(INPUT_SPACE_FILE), "a bundle's input space", BundleError)
        if "features" not in arrays:
            raise BundleError(f"{bundle.file(INPUT_SPACE_FILE)}: no features")
        features = arrays["features"]
        space = flags.InputSpace.fit(
            features, neighbours=int(fl["input_neighbours"]), quantile=float(fl["input_quantile"])
        )
    with h5py.File(prediction_file, "r") as h5:
        withheld_snr = h5.attrs.get("parallax_withheld_snr")
        input_noise = json.loads(h5.attrs.get("input_noise", "[]"))
    from gaiacnn import provenance

    stamp = provenance.stamp({"observed": observed})
    stamp["inputs_sha256"]["training"] = bundle.info["training_file"]["sha256"]
    correlations = [
        ensemble.LabelCorrelation(**{**c, "labels": tuple(c["labels"])})
        for c in doc.get("label_correlation", [])
    ]
    return catalogue.Aggregation(
        labels=bundle.labels,
        members=bundle.members,
        fits=[fits[x] for x in bundle.labels],
        training_range=training_range,
        calibrations={x: calibrations.get(x) for x in bundle.labels},
        input_space=space,
        withheld_snr=None if withheld_snr is None else float(withheld_snr),
        positions=catalogue._has_positions(observed),
        n_rows={"training": 0, "observed": int(n_rows)},
        attrs=dict(
            config_hash=bundle.info.get("config_hash", ""),
            members=bundle.members,
            labels=bundle.labels,
            snr_calibrated=[x for x, c in calibrations.items() if c is not None],
            calibration_form=catalogue._calibration_form(calibrations),
            **stamp,
            branches=bundle.info["branches"],
            xp_input=bundle.info.get("xp_input") or "",
            input_noise=input_noise,
        ),
        correlations=correlations,
        noise=bool(input_noise),
    )


#: Spectra read at a time to hash them (4096 x 2401 float32: 39 MB).
HASH_ROWS = 4096


class _KnownClasses:
    """The bundle's t-SNE classes: those of the stars its run classified, found by
    (source_id, spectrum); other stars placed into its maps (bundle format >= 1.1)."""

    def __init__(self, bundle: Bundle) -> None:
        import pandas as pd

        with h5py.File(bundle.file(TRAINING_LIKE_FILE), "r") as h5:
            self.index = pd.Index(h5["source_id"][:])
            self.hash = h5["spectrum_hash"][:]
            self.like = h5["training_like"][:]
        self.spectra = str(bundle.info["tsne"]["spectra"])
        self.placement = _Placement(bundle) if bundle.info["tsne"].get("placement") else None

    def lookup(self, observed, start: int, stop: int, sid: np.ndarray):
        """(classified, training-like) of the stars ``start:stop`` of ``observed``: the
        run's class where the bundle holds the same source_id with the same spectrum, a
        placed one for the others; with a bundle of no placement sets, those others are
        not classified."""
        from gaiacnn.tsne.features import _datasets

        pos = self.index.get_indexer(sid)
        known = pos >= 0
        like = np.zeros(len(sid), bool)
        with h5py.File(observed, "r") as h5:
            has_spectra = all(n in h5 for n in _datasets(self.spectra))
            if known.any() and has_spectra:
                hashes = _spectra_hashes(h5, self.spectra, start, stop, observed)
                known &= self.hash[np.maximum(pos, 0)] == hashes
            else:
                known[:] = False
        like[known] = self.like[pos[known]]
        if self.placement is None or known.all():
            return known, like
        if not has_spectra:
            raise BundleError(f"{observed}: no {self.spectra}, which the bundle's t-SNE maps embed")
        new = np.flatnonzero(~known)
        like[new] = self.placement.training_like(observed, start + new)
        return np.ones(len(sid), bool), like


def _flagged(table, agg, bundle: Bundle, classes: _KnownClasses, observed, start: int):
    """``table`` (observed stars from row ``start`` of ``observed``) with its
    ``flag_boundary``: the t-SNE digit from the bundle's classes, ``-`` (not classified)
    for a star it does not know."""
    from gaiacnn import flags

    digits = list(bundle.info["flags"]["digits"])
    input_digit = bool(bundle.info["flags"]["input_digit"])
    t = digits.index(flags.TSNE_DIGIT)
    sid = table["source_id"].to_numpy()
    known, like = classes.lookup(observed, start, start + len(sid), sid)
    values = {c: table[c].to_numpy(float) for c in digits[:t]}
    distance = table["input_distance"].to_numpy(float)
    inputs_out = flags.input_outside(table) if np.isfinite(distance).any() else None
    codes = flags.boundary_flags(
        values, agg.training_range, agg.labels, ~like, inputs_out, input_digit
    )
    table["flag_boundary"] = [
        c if k else c[:t] + flags.NOT_AVAILABLE + c[t + 1 :]
        for c, k in zip(codes, known, strict=True)
    ]
    table["recommended"] = flags.recommended(table["flag_boundary"])
    return table


def _predict_part(member_dirs, observed, out_paths, rows, settings, threads) -> None:
    """One process's share of the network: rows ``[start, stop)`` of every member."""
    from gaiacnn import model
    from gaiacnn.logs import configure_tensorflow

    configure_tensorflow(threads)
    model.predict_members(
        member_dirs,
        observed,
        out_paths,
        chunk_rows=int(settings["chunk_rows"]),
        batch_size=int(settings["batch_size"]),
        precision=str(settings["precision"]),
        rows=tuple(rows),
        resample=bool(settings["resample"]),
        prefetch_chunks=int(settings["prefetch_chunks"]),
        noise_draws=int(settings.get("input_noise", {}).get("draws", 0)),
        noise_sources=list(settings.get("input_noise", {}).get("sources", [])),
    )


def predict(
    bundle_path,
    observed,
    fits_out,
    *,
    csv_out=None,
    parquet_out=None,
    workers: int = 1,
    shard: tuple[int, int] | None = None,
    settings: Mapping | None = None,
    threads: int | None = None,
    chunk_rows: int = 65536,
) -> dict:
    """The catalogue of the observed stars of ``observed`` (rows of shard ``a`` of ``b``
    with ``shard=(a, b)``) from the bundle: the same rows as the workflow's catalogue
    (labels, ``e_*``, ``sigma_*``, the inputs, ``input_distance``, ``flag_boundary``), as
    FITS (and Parquet, CSV), written atomically.  ``workers`` processes split the rows for the
    network; the rest streams ``chunk_rows`` stars at a time (memory independent of N).
    An input that breaks the bundle's contract (grids, branches) is refused before any
    star is predicted.  Returns a summary."""
    import tempfile
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    from tqdm.auto import tqdm

    from gaiacnn import catalogue, layout, model

    bundle = load(bundle_path)
    settings = {**PREDICTION_DEFAULTS, **(settings or {})}
    # the input noise the run's sigma_* was calibrated with (none in older bundles)
    settings["input_noise"] = bundle.info.get("input_noise") or {"sources": [], "draws": 0}
    info = layout.validate(observed, check_values=False)
    n = info.n_rows
    start, stop = 0, n
    if shard is not None:
        a, b = (int(v) for v in shard)
        if not (b >= 1 and 0 <= a < b):
            raise ValueError(f"shard {a}/{b}: a from 0 to b - 1")
        start, stop = a * n // b, (a + 1) * n // b  # b near-equal row ranges
    for d in bundle.member_dirs():  # every member's contract, before any prediction
        scalers = model.Scalers.from_json((d / "scalers.json").read_text(encoding="utf-8"))
        model.check_contract(scalers, info, resample=bool(settings["resample"]))
    workers = max(1, min(int(workers), max(1, stop - start)))
    cores = threads or os.cpu_count() or 1
    bounds = np.linspace(start, stop, workers + 1).astype(int)
    parts = [(int(lo), int(hi)) for lo, hi in itertools.pairwise(bounds)]
    out_dir = Path(fits_out).resolve().parent
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".gaiacnn-predict-") as work:
        files = [
            [Path(work) / f"part{k}_{m}.h5" for m in bundle.members] for k in range(len(parts))
        ]
        dirs = [str(d) for d in bundle.member_dirs()]
        if len(parts) == 1:
            _predict_part(dirs, observed, files[0], parts[0], settings, cores)
        else:
            per = max(1, cores // len(parts))
            with ProcessPoolExecutor(len(parts), mp_context=get_context("spawn")) as pool:
                jobs = [
                    pool.submit(_predict_part, dirs, str(observed), f, p, settings, per)
                    for f, p in zip(files, parts, strict=True)
                ]
                for job in jobs:
                    job.result()
        classes = _KnownClasses(bundle)
        # read and fitted once (the uncertainty model, the input space); each part of the
        # rows differs only in its number of stars
        base = _aggregation(bundle, observed, stop - start, files[0][0])

        def chunks():
            bar = tqdm(total=stop - start, desc="catalogue", unit="stars")
            for (lo, hi), f in zip(parts, files, strict=True):
                agg = dataclasses.replace(base, n_rows={"training": 0, "observed": hi - lo})
                row = lo
                for table in catalogue.iter_table(
                    agg, {"observed": f}, {"observed": observed}, chunk_rows,
                    samples=("observed",), offset=lo,
                ):  # fmt: skip
                    yield _flagged(table, agg, bundle, classes, observed, row)
                    row += len(table)
                    bar.update(len(table))
            bar.close()

        attrs = {
            **base.attrs,
            "flag_digits": list(bundle.info["flags"]["digits"]),
            "tsne_spectra": bundle.info["tsne"]["spectra"],
        }
        catalogue.write_chunks(
            chunks(), stop - start, fits_out, csv_out, attrs=attrs, parquet_path=parquet_out
        )
    return {"stars": stop - start, "rows": (start, stop), "members": len(bundle.members)}


def export_results(results, config_file, out_dir) -> Bundle:
    """:func:`export` of a finished run's ``results`` directory (the workflow's layout),
    with its configuration file ``config_file`` (validated, defaults filled); the labels,
    members and configuration hash read off the run's catalogue and uncertainty model."""
    import yaml

    from gaiacnn import catalogue
    from gaiacnn.config import SCHEMA_PATH, load_schema, validate_config
    from gaiacnn.io import read_json

    res = Path(results)
    cat = res / "catalogue" / "catalogue.fits"
    model_json = res / "ensemble" / "uncertainty_model.json"
    for path in (cat, model_json):
        if not path.is_file():
            raise BundleError(f"{path}: missing; run the workflow to the catalogue first")
    cfg = yaml.safe_load(Path(config_file).read_text(encoding="utf-8")) or {}
    cfg = validate_config(cfg, load_schema(SCHEMA_PATH))
    attrs = catalogue.read_attrs(cat)
    members = read_json(model_json, "an uncertainty model", ["members"])["members"]
    tsne_cfg = cfg["tsne"]
    perps = [f"p{float(p):g}.h5" for p in tsne_cfg["perplexities"]]
    if tsne_cfg["mode"] == "joint":
        map_files = [res / "tsne" / "joint" / p for p in perps]
    else:
        n_sets = int(tsne_cfg["reference_maps"])
        map_files = [res / "tsne" / "scalable" / f"r{k}" / p for k in range(n_sets) for p in perps]
    return export(
        out_dir,
        member_dirs=[res / "ensemble" / "members" / m for m in members],
        map_files=map_files,
        uncertainty_model=model_json,
        training_arrays=res / "arrays" / "training.h5",
        observed_arrays=res / "arrays" / "observed.h5",
        tsne_file=res / "tsne" / "training_like.h5",
        catalogue_fits=cat,
        config=cfg,
        config_hash=attrs["config_hash"],
        labels=attrs["labels"],
        input_neighbours=int(cfg["flags"]["input_neighbours"]),
        input_quantile=float(cfg["flags"]["input_quantile"]),
        input_digit=bool(cfg["flags"]["input_digit"]),
    )
