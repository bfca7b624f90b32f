"""Rule import_arrays: validate a user's HDF5 file and bring it into results/arrays."""

import os
import sys

sys.stderr = open(snakemake.log[0], "w")  # noqa: F821
os.dup2(sys.stderr.fileno(), 2)  # C-level messages (TensorFlow, HDF5) too

from gaiacnn.pipeline import run_import_arrays, setup_logging  # noqa: E402

setup_logging()
run_import_arrays(
    snakemake.input[0],  # noqa: F821
    snakemake.output.arrays,  # noqa: F821
    snakemake.output.report,  # noqa: F821
    sample_name=snakemake.wildcards.sample,  # noqa: F821
    labels=snakemake.params.labels,  # noqa: F821
    rvs_cfg=snakemake.params.rvs,  # noqa: F821
    arrays_cfg=snakemake.params.arrays,  # noqa: F821
    provenance=snakemake.params.provenance,  # noqa: F821
    training_cuts=snakemake.params.training_cuts,  # noqa: F821
    cuts=snakemake.params.cuts,  # noqa: F821
)
