# Configuration check, input functions and wildcard constraints shared by every rule.
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError

from gaiacnn import layout, shards
from gaiacnn.ensemble import input_noise_settings
from gaiacnn.config import ConfigError, config_hash, load_schema, validate_config
from gaiacnn.tsne import placement_shards
from gaiacnn.tsne import reference_set_config

try:
    validate_config(
        config, load_schema(Path(workflow.basedir) / "config" / "schema.yaml")
    )
except ConfigError as err:
    sys.exit(f"Configuration error: {err}")

if config["data"]["source"] == "files":
    for _sample in ("training", "observed"):
        if not config["data"]["files"][_sample]:
            sys.exit(
                f"Configuration error: data.source is 'files' but data.files.{_sample} is empty"
            )

if (
    config["figures"]["galactic"]["distance"].strip().lower() == "table"
    and not config["figures"]["external"]["distances"]
):
    sys.exit(
        "Configuration error: figures.galactic.distance is 'table' but "
        "figures.external.distances is null"
    )

SAMPLES = ("training", "observed")
# Hashes recorded in the outputs' provenance; each covers only the sections that shape
# that output, so that changing the ensemble size does not rebuild the arrays.
# How the archive is reached (servers, retries, batches, cache) does not shape the data.
_HOW = {
    "tap_server",
    "data_server",
    "batch_size",
    "retries",
    "backoff_s",
    "retry_total_s",
    "timeout_s",
}
_DATA = {
    "source": config["data"]["source"],
    "files": config["data"]["files"],
    **{
        part: {
            k: v
            for k, v in config["data"][part].items()
            if k not in _HOW | {"cache_dir"}
        }
        for part in ("gaia", "apogee")
        if config["data"]["source"] == "gaia_dr3"
    },
}
DATA_HASH = config_hash(
    {
        "data": _DATA,
        **{k: config[k] for k in ("labels", "rvs", "selection", "arrays", "demo")},
    }
)
CONFIG_HASH = config_hash(
    {"data": DATA_HASH, **{k: config[k] for k in ("model", "ensemble", "uncertainty")}}
)


wildcard_constraints:
    sample="training|observed",
    split=r"\d+",
    seed=r"\d+",
    perplexity=r"\d+(\.\d+)?",
    shard=r"\d+",
    ref=r"\d+",


def source_tables(wildcards=None):
    """gaia_source-like and allStar-like tables of the configured source."""
    if config["data"]["source"] == "gaia_dr3":
        return {
            "gaia": "results/gaia/gaia_source.fits",
            "allstar": "results/apogee/allStar-dr17-synspec_rev1.fits",
        }
    return {
        "gaia": "results/demo/gaia_source.fits",
        "allstar": "results/demo/allStar.fits",
    }


def raw_store():
    """Raw spectra store (every RVS star, NaN pixels kept) of the configured source."""
    if config["data"]["source"] == "gaia_dr3":
        return "results/gaia/rvs_xp.h5"
    return "results/demo/rvs_xp.h5"


def user_file(wildcards):
    """The user's HDF5 file for one sample (data.source: files)."""
    return config["data"]["files"][wildcards.sample]


_FILE_LABELS = {}


def label_names():
    """The labels of the run: the keys of ``labels`` (demo, gaia_dr3: APOGEE columns), or
    every ``labels/<name>`` of the training file (data.source: files)."""
    if config["data"]["source"] != "files":
        return list(config["labels"])
    path = config["data"]["files"]["training"]
    if path not in _FILE_LABELS:
        try:
            _FILE_LABELS[path] = list(layout.validate(path, check_values=False).labels)
        except layout.LayoutError:
            # the import_arrays job refuses the file with its message (in its log); no
            # job that needs the labels can run before it
            _FILE_LABELS[path] = []
    return _FILE_LABELS[path]


def provenance():
    return {"source": config["data"]["source"], "config_hash": DATA_HASH}


def model_labels():
    """Labels the CNN predicts: model.labels, or every configured label."""
    return list(config["model"]["labels"]) or label_names()


MEMBERS = [
    (split, seed)
    for split in range(config["ensemble"]["n_splits"])
    for seed in range(config["ensemble"]["n_seeds"])
]


def member_names():
    return [f"split{split}_seed{seed}" for split, seed in MEMBERS]


def n_rows(sample):
    """Stars of a sample's arrays file, from the checkpoint count_rows (after the arrays)."""
    return shards.read_row_count(checkpoints.count_rows.get(sample=sample).output[0])


def member_shards(wildcards):
    """One member's prediction shards of one sample (prediction.shard_rows stars each)."""
    k = shards.n_shards(n_rows(wildcards.sample), config["prediction"]["shard_rows"])
    member = f"split{wildcards.split}_seed{wildcards.seed}"
    return [
        f"results/ensemble/predictions/{wildcards.sample}/{member}/shard{i}.h5"
        for i in range(k)
    ]


def member_models():
    return [f"results/ensemble/members/{m}/model.keras" for m in member_names()]


def prediction_settings():
    """config prediction less members_per_job, which picks the rule and changes no result
    (so that switching it reruns nothing: Snakemake's params trigger)."""
    return {k: v for k, v in config["prediction"].items() if k != "members_per_job"}


def member_scalers():
    return [f"results/ensemble/members/{m}/scalers.json" for m in member_names()]


def member_shard_outputs():
    """Every member's prediction of one shard (wildcards sample, shard), in member order."""
    return [
        f"results/ensemble/predictions/{{sample}}/{m}/shard{{shard}}.h5"
        for m in member_names()
    ]


def member_predictions(sample):
    return [
        f"results/ensemble/predictions/{sample}/split{split}_seed{seed}.h5"
        for split, seed in MEMBERS
    ]


def check_member(wildcards):
    """Refuse, before any job runs, a member outside the configured ensemble."""
    split, seed = int(wildcards.split), int(wildcards.seed)
    n_splits, n_seeds = config["ensemble"]["n_splits"], config["ensemble"]["n_seeds"]
    if split >= n_splits or seed >= n_seeds:
        raise WorkflowError(
            f"ensemble member split{split}_seed{seed} does not exist: the ensemble has "
            f"splits 0..{n_splits - 1} and seeds 0..{n_seeds - 1} (config ensemble.*)"
        )
    return f"split{split}_seed{seed}"


def tsne_maps(first_set_only=False):
    """The t-SNE map of each perplexity, from the configured mode; in scalable mode those of
    every reference map set (r0, r1, ...: tsne.reference_maps), or of the first only."""
    tsne_cfg = config["tsne"]
    perps = [f"p{p:g}.h5" for p in tsne_cfg["perplexities"]]
    if tsne_cfg["mode"] == "joint":
        return [f"results/tsne/joint/{p}" for p in perps]
    n_sets = 1 if first_set_only else tsne_cfg["reference_maps"]
    return [f"results/tsne/scalable/r{k}/{p}" for k in range(n_sets) for p in perps]


def tsne_set_config(wildcards):
    """The tsne settings of one reference map set (scalable mode): its own seed."""
    return reference_set_config(config["tsne"], int(wildcards.ref))


def tsne_reference_embeddings(wildcards):
    """The saved reference embedding of each perplexity of one map set (scalable mode)."""
    return [
        f"results/tsne/scalable/r{wildcards.ref}/p{p:g}/embedding.h5"
        for p in config["tsne"]["perplexities"]
    ]


def tsne_shards(wildcards):
    """The placement shards of one map set, each placed into its every map (scalable mode)."""
    k = placement_shards(n_rows("observed"), config["tsne"])
    return [f"results/tsne/scalable/r{wildcards.ref}/shard{i}.h5" for i in range(k)]


def figure_gradient_members():
    """Member model files whose gradients the figures average (figures.red_clump.members)."""
    n = config["figures"]["red_clump"]["members"]
    return member_models()[:n] if n else member_models()


def catalogue_outputs():
    """The catalogue's files: FITS always, Parquet and CSV as configured (catalogue.*)."""
    out = {"fits": "results/catalogue/catalogue.fits"}
    if config["catalogue"]["parquet"]:
        out["parquet"] = "results/catalogue/catalogue.parquet"
    if config["catalogue"]["csv"]:
        out["csv"] = "results/catalogue/catalogue.csv"
    return out


def figure_inputs():
    """Every input of the figure rendering: the demo's truth and the configured external tables
    only where they exist.  A run from a bundle has no training sample, t-SNE maps or
    members of its own: its figures are the observed sample's, with the bundle's
    uncertainty model."""
    if BUNDLE:
        inputs = {
            "catalogue": "results/catalogue/catalogue.fits",
            "observed": "results/arrays/observed.h5",
            "uncertainty_model": f"{BUNDLE}/uncertainty_model.json",
        }
    else:
        inputs = {
            "catalogue": "results/catalogue/catalogue.fits",
            "training": "results/arrays/training.h5",
            "observed": "results/arrays/observed.h5",
            "uncertainty_model": "results/ensemble/uncertainty_model.json",
            "maps": tsne_maps(first_set_only=True),
            "members": figure_gradient_members(),
        }
    if config["data"]["source"] == "demo":
        inputs["truth"] = "results/demo/truth.h5"
    external = {k: v for k, v in config["figures"]["external"].items() if v}
    inputs.update({f"external_{k}": v for k, v in external.items()})
    return inputs


def figure_report_labels(wildcards, output):
    """Report columns of one figure (rendered before the report is built): its number and
    name, what it shows (or why it was not drawn) and how many stars, from the figures'
    index."""
    from gaiacnn.figures.render import report_labels

    return report_labels(output[0], wildcards.name)


#: A trained ensemble's bundle (ensemble.bundle): the catalogue comes from it, no training.
BUNDLE = config["ensemble"]["bundle"]


def final_targets():
    if BUNDLE:
        # from a bundle: the observed sample's catalogue and figures; the training sample
        # and the t-SNE maps belong to the run that trained it
        targets = [
            "results/arrays/observed.h5",
            "results/catalogue/catalogue.fits",
            "results/figures",
        ]
        return targets + (
            ["results/catalogue/hats"] if config["catalogue"]["hats"] else []
        )
    targets = expand("results/arrays/{sample}.h5", sample=SAMPLES)
    targets.append("results/arrays/summary.txt")
    targets.append("results/catalogue/catalogue.fits")
    if config["catalogue"]["hats"]:
        targets.append("results/catalogue/hats")
    targets.append("results/figures")
    targets.append("results/bundle")
    if config["data"]["source"] in ("demo", "files"):
        targets.append("results/samples/cut_report.tsv")
    if config["data"]["source"] == "demo":
        targets.append("results/evaluation/precision.tsv")
        targets.append("results/evaluation/tsne_confusion.tsv")
    return targets


onsuccess:
    # The plot-free summary: N per sample.
    if Path("results/arrays/summary.txt").exists():
        print(Path("results/arrays/summary.txt").read_text(), end="")
