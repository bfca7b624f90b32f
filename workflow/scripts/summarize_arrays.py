"""Rule summarize_arrays: N per sample, printed to the log and written to a text file."""

import os
import sys

sys.stderr = open(snakemake.log[0], "w")  # noqa: F821
os.dup2(sys.stderr.fileno(), 2)  # C-level messages (TensorFlow, HDF5) too

from gaiacnn.pipeline import summarize  # noqa: E402

paths = dict(zip(("training", "observed"), snakemake.input, strict=True))  # noqa: F821
print(summarize(paths, snakemake.output[0]), file=sys.stderr)  # noqa: F821
