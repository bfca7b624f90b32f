"""Rule aggregate_ensemble: mean, e_*, running dispersion, sigma_*; the catalogue."""

import os
import sys

sys.stderr = open(snakemake.log[0], "w")  # noqa: F821
os.dup2(sys.stderr.fileno(), 2)  # C-level messages (TensorFlow, HDF5) too

from gaiacnn.pipeline import run_aggregate, setup_logging  # noqa: E402

setup_logging()
run_aggregate(
    snakemake.input.training,  # noqa: F821
    snakemake.input.observed,  # noqa: F821
    {"training": snakemake.input.training_arrays, "observed": snakemake.input.observed_arrays},  # noqa: F821
    snakemake.output.fits,  # noqa: F821
    None,  # the CSV comes with the flagged catalogue
    snakemake.output.model,  # noqa: F821
    labels=snakemake.params.labels,  # noqa: F821
    members=snakemake.params.members,  # noqa: F821
    uncertainty_cfg=snakemake.params.uncertainty,  # noqa: F821
    training_cfg=snakemake.params.training,  # noqa: F821
    config_hash=snakemake.params.config_hash,  # noqa: F821
    flags_cfg=snakemake.params.flags,  # noqa: F821
)
