"""Rule apogee_download: the APOGEE DR17 allStar file, resumable and verified."""

import os
import sys

sys.stderr = open(snakemake.log[0], "w")  # noqa: F821
os.dup2(sys.stderr.fileno(), 2)

from gaiacnn.pipeline import run_apogee_download, setup_logging  # noqa: E402

setup_logging()
run_apogee_download(snakemake.params.apogee, snakemake.output[0])  # noqa: F821
