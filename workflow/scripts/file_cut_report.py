"""Rule file_cut_report (data.source: files): the imports' cut reports as one table."""

import os
import sys

sys.stderr = open(snakemake.log[0], "w")  # noqa: F821
os.dup2(sys.stderr.fileno(), 2)  # C-level messages (TensorFlow, HDF5) too

from gaiacnn.pipeline import run_file_cut_report, setup_logging  # noqa: E402

setup_logging()
run_file_cut_report(list(snakemake.input), snakemake.output[0])  # noqa: F821
