"""No file that is read can run code (issue 27): a crafted file planted where the workflow
stores a result that a later job reads is refused with an error, and the code it carries
never runs.

Every rule output is listed from the rules themselves (Snakemake's API, for every
``data.source``, since the archive and import rules exist only with theirs); each output
pattern a job reads has a case here (planted file + the package function that reads it),
and each one no job reads is listed in :data:`NOT_READ` with the reason, so a new output
fails :func:`test_every_rule_output_is_planted_or_not_read` until it is given one.

The planted files: a Python object serialisation whose loading would create a marker file
(the payload is checked to do so when loaded that way), and where the format allows, the
same smuggled inside a file of the expected kind (an ``.npz`` with an object array, JSON
meant for an object-restoring loader, a Keras archive with a ``Lambda`` layer or a config
naming an arbitrary function)."""

from __future__ import annotations

import io
import json
import os
import pickle
import re
import shlex
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
from workflow_helpers import DATA_SOURCES, REPO, workflow_rules

from gaiacnn import archive, tables


class Plant:
    """Loading this object's serialisation runs a shell command that creates ``marker``."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {shlex.quote(self.marker)}",))


def payloads(marker: Path, suffix: str) -> dict[str, bytes]:
    """The crafted files for a path ending in ``suffix``: always the plain serialisation;
    an ``.npz`` holding it as an object array; JSON an object-restoring loader would run."""
    out = {"serialised object": pickle.dumps(Plant(marker), protocol=2)}
    out["serialised object, newest protocol"] = pickle.dumps(Plant(marker))
    if suffix == ".npz":
        buf = io.BytesIO()
        smuggled = np.array([Plant(marker)], dtype=object)
        # under the names the readers load first: the index's, the archive cache's
        np.savez(buf, features=smuggled, requested=smuggled, source_id=smuggled)
        out["npz with an object array"] = buf.getvalue()
    if suffix == ".json":
        command = f"touch {shlex.quote(str(marker))}"
        doc = {"py/reduce": [{"py/function": "os.system"}, {"py/tuple": [command]}]}
        out["object-restoring JSON"] = json.dumps(doc).encode()
    return out


# ------------------------------------------------------------------ valid neighbours
# What a stage reads before the planted file, valid, so that the planted file is reached.


def _fits(path: Path, columns: dict) -> Path:
    tables.write_fits_table(pd.DataFrame(columns), path)
    return path


def _catalogue(tmp: Path) -> Path:
    columns = {"source_id": np.arange(3), "in_training": np.zeros(3, bool)}
    return _fits(tmp / "valid_catalogue.fits", {**columns, "flag_boundary": ["0"] * 3})


def _gaia(tmp: Path) -> Path:
    from gaiacnn.arrays import GAIA_SCALARS, OPTIONAL_GAIA_SCALARS

    columns = {c: np.ones(3) for c in GAIA_SCALARS if c not in OPTIONAL_GAIA_SCALARS}
    return _fits(tmp / "valid_gaia.fits", {"source_id": np.arange(3, dtype=np.int64), **columns})


def _sample(tmp: Path) -> Path:
    path = tmp / "valid_sample.tsv"
    pd.DataFrame({"source_id": np.arange(3)}).to_csv(path, sep="\t", index=False)
    return path


def _observed(tmp: Path) -> Path:
    path = tmp / "valid_observed.h5"
    with h5py.File(path, "w") as h5:
        h5["source_id"] = np.arange(3, dtype=np.int64)
    return path


def _reference_map(tmp: Path) -> Path:
    from gaiacnn.tsne import MAP_DATASETS

    path = tmp / "valid_reference.h5"
    # one training star, then the two observed stars TSNE_CFG's reference_observed takes
    in_training = np.array([True, False, False])
    values = (np.arange(3), in_training, np.zeros((3, 2)), np.zeros(3), np.ones(3, bool))
    with h5py.File(path, "w") as h5:
        for name, v in zip(MAP_DATASETS, values, strict=True):
            h5[name] = v
        h5.attrs["perplexity"] = 10.0
    return path


def _index(tmp: Path) -> Path:
    from gaiacnn import tsne

    path = tmp / "valid_index.npz"
    tsne.write_index(path, tsne.build_index(np.eye(4, dtype=np.float32), 2))
    return path


def _member(planted: Path) -> Path:
    """The member directory of ``planted``, the other member file valid (scalers next to a
    planted model) or a placeholder (a model next to planted scalers, read after them)."""
    from gaiacnn.model import MODEL_FILE, SCALERS_FILE, Scalers

    d = planted.parent
    if planted.name == MODEL_FILE:
        scalers = Scalers(("teff",), np.array([3000.0]), np.array([7000.0]), branches=("rvs",))
        (d / SCALERS_FILE).write_text(scalers.to_json(), encoding="utf-8")
    else:
        (d / MODEL_FILE).touch()
    return d


TSNE_CFG = {
    "perplexities": [10],
    "mode": "scalable",
    "spectra": "auto",
    "pca_components": 0,
    "n_iter": 10,
    "seed": 0,
    "threshold_rule": "quantile",
    "threshold_quantile": 0.99,
    "threshold_factor": 3.0,
    "threshold_neighbours": 1,
    "threshold_neighbours_fraction": 0.0,
    "reference_observed": 2,
    "reference_training": "all",
    "reference_maps": 1,
    "place_shard_rows": 10,
    "place_chunk_rows": 10,
    "place_pca_components": 2,
    "place_neighbours": 2,
    "place_perplexity": 1,
    "place_n_iter": 0,
}


# ------------------------------------------------------------------ the cases


@dataclass(frozen=True)
class Case:
    """``path``: a concrete instance of a rule's output pattern (relative to the working
    directory); ``reader``: the stage that reads it; ``read(planted, tmp)``: that stage's
    package function called on the planted file (``tmp``: a scratch directory)."""

    path: str
    reader: str
    read: Callable[[Path, Path], object]


CASES: list[Case] = []


def reads(*paths: str, stage: str):
    """Register the decorated ``read(planted, tmp)`` as the case of each of ``paths``."""

    def register(read):
        CASES.extend(Case(path, stage, read) for path in paths)
        return read

    return register


GAIA = ("results/demo/gaia_source.fits", "results/gaia/gaia_source.fits")
ALLSTAR = ("results/demo/allStar.fits", "results/apogee/allStar-dr17-synspec_rev1.fits")
RAW = ("results/demo/rvs_xp.h5", "results/gaia/rvs_xp.h5")
SAMPLES = ("results/samples/training.tsv", "results/samples/observed.tsv")
ARRAYS = ("results/arrays/training.h5", "results/arrays/observed.h5")
ROWS = ("results/arrays/training_rows.json", "results/arrays/observed_rows.json")
MEMBER = "results/ensemble/members/split0_seed0"
UNCERTAINTY = "results/ensemble/uncertainty_model.json"
GRAPHS = ("results/tsne/joint/neighbours.npz", "results/tsne/scalable/r0/neighbours.npz")
MAPS = ("results/tsne/joint/p10.h5", "results/tsne/scalable/r0/p10.h5")
SCALABLE = "results/tsne/scalable/r0"


@reads(*GAIA, stage="select_samples")
def _(p, t):
    from gaiacnn import selection

    selection.run_selection(p, t / "allStar.fits", t / "tr.tsv", t / "ob.tsv", t / "c.tsv", {}, {})


@reads(*GAIA, stage="build_arrays")
def _(p, t):
    from gaiacnn import arrays

    arrays.run_build_arrays(
        t / "raw.h5", p, t / "s.tsv", t / "a.h5", sample_name="training", labels=[],
        rvs_cfg={}, arrays_cfg={}, provenance={},
    )  # fmt: skip


@reads(*ALLSTAR, stage="select_samples")
def _(p, t):
    tables.read_fits_columns(p)  # what select_samples reads it with, after gaia_source


@reads(*RAW, stage="build_arrays")
def _(p, t):
    from gaiacnn import arrays

    arrays.run_build_arrays(
        p, _gaia(t), _sample(t), t / "a.h5", sample_name="training", labels=[],
        rvs_cfg={"continuum_windows_nm": [], "nan_fill_quantile": 0.75},
        arrays_cfg={"chunk_rows": 10, "compression": None}, provenance={},
    )  # fmt: skip


@reads("results/demo/truth.h5", stage="evaluate_flags")
def _(p, t):
    from gaiacnn import evaluation

    evaluation.flag_confusion(_catalogue(t), p)


@reads(*SAMPLES, stage="gaia_spectra")
def _(p, t):
    from gaiacnn import archive

    archive.run_gaia_spectra([p], {}, t / "raw.h5", {})


@reads(*SAMPLES, stage="build_arrays")
def _(p, t):
    from gaiacnn import arrays

    arrays.run_build_arrays(
        t / "raw.h5", _gaia(t), p, t / "a.h5", sample_name="training", labels=[],
        rvs_cfg={}, arrays_cfg={}, provenance={},
    )  # fmt: skip


@reads(
    *(f"results/samples/cut_report_{s}.tsv" for s in ("training", "observed")),
    stage="file_cut_report",
)
def _(p, t):
    from gaiacnn import selection

    selection.run_file_cut_report([p], t / "cut_report.tsv")


@reads(*ARRAYS, stage="count_rows")
def _(p, t):
    from gaiacnn import arrays

    arrays.run_count_rows(p, t / "rows.json")


@reads(*ARRAYS, stage="summarize_arrays")
def _(p, t):
    from gaiacnn import arrays

    arrays.summarize({"training": p})


@reads(*ARRAYS, stage="tsne_neighbours")
def _(p, t):
    from gaiacnn import tsne

    tsne.run_tsne_neighbours(p, p, t / "g.npz", mode="joint", tsne_cfg=TSNE_CFG)


@reads(*ARRAYS, stage="predict_member")
def _(p, t):
    from gaiacnn import ensemble

    rows = t / "rows.json"
    rows.write_text(json.dumps({"n_rows": 3}))
    ensemble.run_predict_member(t / "model.keras", p, rows, t / "o.h5", shard=0, prediction_cfg={})


@reads(*ROWS, stage="predict_member")
def _(p, t):
    from gaiacnn import ensemble

    ensemble.run_predict_member(
        t / "model.keras", t / "a.h5", p, t / "o.h5", shard=0, prediction_cfg={}
    )


@reads(f"{MEMBER}/model.keras", f"{MEMBER}/scalers.json", stage="predict_member, figures")
def _(p, t):
    from gaiacnn.model import load_member

    load_member(_member(p))


@reads("results/ensemble/predictions/observed/split0_seed0/shard0.h5", stage="gather_predictions")
def _(p, t):
    from gaiacnn import ensemble

    ensemble.run_gather_predictions([p], t / "gathered.h5")


@reads("results/ensemble/predictions/observed/split0_seed0.h5", stage="aggregate_ensemble")
def _(p, t):
    from gaiacnn import ensemble

    list(ensemble.iter_member_chunks([p], ["teff"]))


@reads("results/ensemble/labels.fits", stage="flag_catalogue, evaluate_demo")
def _(p, t):
    from gaiacnn import catalogue

    catalogue.read(p)


@reads(UNCERTAINTY, stage="flag_catalogue")
def _(p, t):
    from gaiacnn import flags

    flags.run_flag_catalogue(
        t / "l.fits", t / "t.h5", p, t / "c.fits", t / "c.csv", labels=["teff"]
    )


@reads(UNCERTAINTY, stage="evaluate_demo")
def _(p, t):
    from gaiacnn import evaluation

    evaluation.run_evaluation(
        t / "c.fits", t / "t.h5", p, t / "o.tsv", labels=[], branches=[], snr_edges=[]
    )


@reads(UNCERTAINTY, stage="evaluate_flags")
def _(p, t):
    from gaiacnn import evaluation

    evaluation.run_flag_evaluation(
        t / "c.fits", t / "t.h5", t / "o.tsv", model_json=p, inputs_out=t / "i.tsv"
    )


@reads(UNCERTAINTY, stage="figures")
def _(p, t):
    from gaiacnn import ensemble

    ensemble.read_uncertainty_model(p)


@reads(*GRAPHS, stage="tsne_joint")
def _(p, t):
    from gaiacnn import tsne

    tsne.run_tsne_joint(p, t / "map.h5", perplexity=10, tsne_cfg=TSNE_CFG)


@reads(*GRAPHS, stage="tsne_reference")
def _(p, t):
    from gaiacnn import tsne

    tsne.run_tsne_reference(p, t / "e.h5", t / "m.h5", perplexity=10, tsne_cfg=TSNE_CFG)


@reads(*MAPS, stage="tsne_classify")
def _(p, t):
    from gaiacnn import tsne

    tsne.run_tsne_classify([p], _observed(t), t / "like.h5")


@reads(f"{SCALABLE}/p10/embedding.h5", stage="tsne_place")
def _(p, t):
    from gaiacnn import tsne

    tsne.run_tsne_place(t / "ob.h5", _index(t), [p], t / "shard.h5", shard=0, tsne_cfg=TSNE_CFG)


@reads(f"{SCALABLE}/index.npz", stage="tsne_place")
def _(p, t):
    from gaiacnn import tsne

    tsne.run_tsne_place(t / "ob.h5", p, [], t / "shard.h5", shard=0, tsne_cfg=TSNE_CFG)


@reads(f"{SCALABLE}/p10/reference.h5", stage="tsne_gather")
def _(p, t):
    from gaiacnn import tsne

    tsne.run_tsne_gather(p, [], _observed(t), t / "p10.h5", perplexity=10, tsne_cfg=TSNE_CFG)


@reads(f"{SCALABLE}/shard0.h5", stage="tsne_gather")
def _(p, t):
    from gaiacnn import tsne

    tsne.run_tsne_gather(
        _reference_map(t), [p], _observed(t), t / "p10.h5", perplexity=10, tsne_cfg=TSNE_CFG
    )


@reads("results/bundle/bundle.json", stage="bundle_catalogue")
def _(p, t):
    from gaiacnn import bundle

    # a bundle whose manifest vouches for the planted file: the load reads it as JSON
    root = t / "bundle"
    root.mkdir()
    (root / p.name).write_bytes(p.read_bytes())
    (root / bundle.MANIFEST_FILE).write_text(f"{bundle.sha256_file(root / p.name)}  {p.name}\n")
    bundle.load(root)


@reads("results/tsne/training_like.h5", stage="flag_catalogue")
def _(p, t):
    from gaiacnn import flags

    flags.read_training_like(p)  # what flag_catalogue reads it with, after the labels


@reads("results/catalogue/catalogue.fits", stage="evaluate_flags, figures")
def _(p, t):
    from gaiacnn import evaluation

    evaluation.run_flag_evaluation(p, t / "truth.h5", t / "o.tsv")


@reads("results/catalogue/catalogue.parquet", stage="hats_catalogue")
def _(p, t):
    from gaiacnn import hats

    hats.run_hats_catalogue(p, t / "hats")


@reads("results/figures/figures.json", stage="figures (report labels)")
def _(p, t):
    from gaiacnn.figures import render

    render.report_labels(p.parent, "fig01_snr")


#: A result the workflow keeps outside its rules' outputs and reads again: a batch of the
#: archive's DataLink cache (``data.gaia.cache_dir``), read by gaia_spectra.
BATCH_IDS = np.arange(3, dtype=np.int64)
QUERY = archive.DataLinkQuery("http://127.0.0.1:1/data-server", "Gaia DR3", "INDIVIDUAL")


@reads(
    str(archive.batch_path("cache", QUERY, archive.RVS, BATCH_IDS)),
    stage="gaia_spectra (DataLink cache)",
)
def _(p, t):
    archive.write_raw_store(BATCH_IDS, p.parents[1], t / "raw.h5", query=QUERY, batch_size=3)


#: Rule outputs that no job reads, with the reason; each is also checked to be no rule's
#: input.
NOT_READ = {
    "results/arrays/summary.txt": "printed as text by the Snakefile's onsuccess, never parsed",
    "results/catalogue/catalogue.csv": "the catalogue for people (the FITS one is read)",
    "results/catalogue/hats": "the catalogue for lsdb cross-matches (a final target)",
    "results/ensemble/members/split{split}_seed{seed}/history.json": "training log, not read",
    "results/evaluation/input_flag.tsv": "a table for people",
    "results/evaluation/precision.tsv": "a table for people",
    "results/evaluation/shift.tsv": "a table for people",
    "results/evaluation/tsne_confusion.tsv": "a table for people",
    "results/samples/cut_report.tsv": "a table for people (a final target)",
}

#: Outputs that are directories: the file in each that a job reads.
DIRECTORY_FILES = {
    "results/figures": "results/figures/figures.json",
    "results/bundle": "results/bundle/bundle.json",
}

#: Cases for results that are no rule's output.
NOT_RULE_OUTPUTS = ("cache/RVS/",)


# ------------------------------------------------------------------ the rules' outputs


def _pattern(f) -> str:
    """A rule's file pattern without its wildcard constraints."""
    return re.sub(r"\{(\w+),[^{}]*(\{[^{}]*\}[^{}]*)*\}", r"{\1}", str(f))


def rule_files() -> tuple[dict[str, set[str]], set[str]]:
    """Every output pattern of every rule -> its rules, and every input pattern a rule
    (but ``all``) names itself (not through an input function), with each
    ``data.source`` (the archive rules exist only with gaia_dr3, the import only with
    files) and each ``prediction.members_per_job`` (predict_shard or predict_member); from
    Snakemake's API.  A member's name in a path (predict_shard names each member's output)
    is read as the wildcards split{split}_seed{seed}."""

    def pattern(f) -> str:
        return re.sub(r"split\d+_seed\d+", "split{split}_seed{seed}", _pattern(f))

    outs: dict[str, set[str]] = {}
    ins: set[str] = set()
    for data in DATA_SOURCES:
        for per_job in ("all", "one"):
            # every catalogue file (the CSV is opt-in)
            cfg = {"data": data, "prediction": {"members_per_job": per_job},
                   "catalogue": {"parquet": True, "csv": True, "hats": True}}  # fmt: skip
            for rule in workflow_rules(cfg):
                for f in rule.output:
                    outs.setdefault(pattern(f), set()).add(rule.name)
                if rule.name != "all":
                    ins |= {pattern(f) for f in rule.input if isinstance(f, str)}
    return outs, ins


def _matches(pattern: str, path: str) -> bool:
    regex = re.sub(r"\\\{\w+\\\}", "[^/]+", re.escape(pattern))
    return re.fullmatch(regex, path) is not None


@pytest.fixture(scope="module")
def rules_files() -> tuple[dict[str, set[str]], set[str]]:
    return rule_files()


@pytest.fixture(scope="module")
def outputs(rules_files) -> dict[str, set[str]]:
    return rules_files[0]


def test_every_rule_output_is_planted_or_not_read(outputs):
    assert "results/tsne/scalable/r{ref}/index.npz" in outputs  # the API listed the rules
    assert "results/gaia/rvs_xp.h5" in outputs and "results/arrays/{sample}.h5" in outputs
    uncovered = []
    for pattern, rules in sorted(outputs.items()):
        if pattern in NOT_READ:
            continue
        target = DIRECTORY_FILES.get(pattern, pattern)
        if not any(_matches(target, c.path) for c in CASES):
            uncovered.append(f"{pattern} ({', '.join(sorted(rules))})")
    assert not uncovered, "outputs with no planted-file case: " + "; ".join(uncovered)
    assert set(NOT_READ) <= set(outputs), set(NOT_READ) - set(outputs)
    for case in CASES:  # no case for a path that no rule makes
        made = any(_matches(DIRECTORY_FILES.get(p, p), case.path) for p in outputs)
        assert made or case.path.startswith(NOT_RULE_OUTPUTS), case.path


def test_what_no_job_reads_is_no_rules_input(rules_files):
    """Neither a rule's own inputs nor an input function (common.smk, but the final
    targets of rule ``all``, the summary that ``onsuccess`` prints and the catalogue rules'
    output function) name an output listed as not read."""
    inputs = rules_files[1]
    assert "results/arrays/{sample}.h5" in inputs  # the inputs were listed
    common = (REPO / "workflow" / "rules" / "common.smk").read_text()
    functions = re.sub(
        r"\n(def final_targets\(\)|def catalogue_outputs\(\)|onsuccess):.*?(?=\n\S|\Z)",
        "",
        common,
        flags=re.S,
    )
    assert "def tsne_shards" in functions and "def final_targets" not in functions
    assert "onsuccess" not in functions
    for pattern in NOT_READ:
        assert pattern not in inputs, f"{pattern} is listed as not read but is a rule's input"
        assert Path(pattern).name not in functions, f"an input function names {pattern}"


# ------------------------------------------------------------------ planting


def _payloads_for(path: Path, marker: Path) -> dict[str, bytes]:
    out = payloads(marker, path.suffix)
    if path.suffix == ".keras":
        out.update(_keras_payloads(marker))
    return out


def _keras_payloads(marker: Path) -> dict[str, bytes]:
    """Keras archives that are valid zips of a model config: one with a ``Lambda`` layer
    whose Python function creates ``marker`` (when called, as loading a model does), one
    whose config names ``os.system`` for a layer."""
    import keras

    command = f"touch {shlex.quote(str(marker))}"
    inputs = keras.Input((2,))
    code = keras.layers.Lambda(lambda x: x + 0 * __import__("os").system(command))
    path = marker.parent / "lambda.keras"
    keras.Model(inputs, code(inputs)).save(path)  # building it ran the code once
    marker.unlink()
    lam = path.read_bytes()
    path.unlink()
    with zipfile.ZipFile(io.BytesIO(lam)) as z:
        config = json.loads(z.read("config.json"))
        parts = {n: z.read(n) for n in z.namelist()}
    layer = config["config"]["layers"][1]
    layer.update(module="os", class_name="system", config={"command": command})
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in parts.items():
            z.writestr(name, json.dumps(config) if name == "config.json" else data)
    return {
        "keras archive with a Lambda layer": lam,
        "keras archive naming os.system": buf.getvalue(),
    }


def test_the_payloads_would_run_their_code_if_loaded_unsafely(tmp_path):
    """The planted files are not harmless by accident: loaded as serialised objects, or as
    a Keras archive outside safe mode, they create the marker."""
    import keras

    marker = tmp_path / "MARKER"
    pickle.loads(payloads(marker, ".h5")["serialised object"])
    assert marker.exists()
    marker.unlink()
    path = tmp_path / "model.keras"
    path.write_bytes(_keras_payloads(marker)["keras archive with a Lambda layer"])
    assert not marker.exists()
    keras.models.load_model(path, compile=False, safe_mode=False)
    assert marker.exists()


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.path} [{c.reader}]")
def test_a_planted_file_is_refused_and_runs_nothing(case, tmp_path):
    marker = tmp_path / "MARKER"
    planted = tmp_path / case.path
    planted.parent.mkdir(parents=True, exist_ok=True)
    for kind, payload in _payloads_for(planted, marker).items():
        work = tmp_path / "work" / re.sub(r"\W+", "_", kind)
        work.mkdir(parents=True)
        planted.write_bytes(payload)
        with pytest.raises(Exception) as err:
            case.read(planted, work)
        assert not marker.exists(), f"{kind}: the planted file ran its code"
        # a clear refusal: it names the file (not a file read before it)
        assert planted.name in str(err.value), f"{kind}: {err.type.__name__}: {err.value}"
        planted.unlink()
