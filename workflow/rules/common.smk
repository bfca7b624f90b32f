# Configuration check, input functions and wildcard constraints shared by every rule.
import sys
from pathlib import Path

from gaiacnn.config import ConfigError, config_hash, load_schema, validate_config

try:
    validate_config(
        config, load_schema(Path(workflow.basedir) / "config" / "schema.yaml")
    )
except ConfigError as err:
    sys.exit(f"Configuration error: {err}")

if config["data"]["source"] == "gaia_dr3":
    sys.exit(
        "Configuration error: data.source 'gaia_dr3' (the Gaia archive path) is not "
        "available in this version; use 'demo' or 'files'."
    )
if config["data"]["source"] == "files":
    for _sample in ("training", "observed"):
        if not config["data"]["files"][_sample]:
            sys.exit(
                f"Configuration error: data.source is 'files' but data.files.{_sample} is empty"
            )

SAMPLES = ("training", "observed")
CONFIG_HASH = config_hash(config)


wildcard_constraints:
    sample="training|observed",


def source_tables(wildcards=None):
    """gaia_source-like and allStar-like tables of the configured source."""
    return {
        "gaia": "results/demo/gaia_source.fits",
        "allstar": "results/demo/allStar.fits",
    }


def raw_store():
    """Raw spectra store (every RVS star, NaN pixels kept) of the configured source."""
    return "results/demo/rvs_xp.h5"


def user_file(wildcards):
    """The user's HDF5 file for one sample (data.source: files)."""
    return config["data"]["files"][wildcards.sample]


def label_names():
    return list(config["labels"])


def provenance():
    return {"source": config["data"]["source"], "config_hash": CONFIG_HASH}


def final_targets():
    targets = expand("results/arrays/{sample}.h5", sample=SAMPLES)
    targets.append("results/arrays/summary.txt")
    if config["data"]["source"] == "demo":
        targets.append("results/samples/cut_report.tsv")
    return targets


onsuccess:
    # The plot-free summary: N per sample.
    if Path("results/arrays/summary.txt").exists():
        print(Path("results/arrays/summary.txt").read_text(), end="")
