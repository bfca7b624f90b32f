"""Rule summarize_arrays: N per sample, printed to the log and written to a text file."""

import sys

sys.stderr = open(snakemake.log[0], "w")  # noqa: F821

from gaiacnn.pipeline import summarize  # noqa: E402

paths = dict(zip(("training", "observed"), snakemake.input, strict=True))  # noqa: F821
print(summarize(paths, snakemake.output[0]), file=sys.stderr)  # noqa: F821
