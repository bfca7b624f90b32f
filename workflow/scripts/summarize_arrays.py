"""Rule summarize_arrays: N per sample and what each dataset is used for (or why it is not),
printed to the log and written to a text file."""

import os
import sys

sys.stderr = open(snakemake.log[0], "w")  # noqa: F821
os.dup2(sys.stderr.fileno(), 2)  # C-level messages (TensorFlow, HDF5) too

from gaiacnn.pipeline import summarize  # noqa: E402

paths = dict(zip(("training", "observed"), snakemake.input, strict=True))  # noqa: F821
text = summarize(
    paths,
    snakemake.output[0],  # noqa: F821
    branches=snakemake.params.branches,  # noqa: F821
    xp_input=snakemake.params.xp_input,  # noqa: F821
    phot_input=snakemake.params.phot_input,  # noqa: F821
    labels=snakemake.params.labels,  # noqa: F821
    tsne_choice=snakemake.params.tsne_spectra,  # noqa: F821
)
print(text, file=sys.stderr)
