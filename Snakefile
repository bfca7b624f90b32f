# Gaia-RVS hybrid-CNN workflow (Guiglion et al. 2024, A&A 682, A9).
# The table of contents: rules live in workflow/rules/, logic in the gaiacnn package.
from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/demo.smk"
include: "workflow/rules/archive.smk"
include: "workflow/rules/selection.smk"
include: "workflow/rules/arrays.smk"
include: "workflow/rules/ensemble.smk"
include: "workflow/rules/tsne.smk"
include: "workflow/rules/figures.smk"
include: "workflow/rules/bundle.smk"
include: "workflow/rules/catalogue.smk"


rule all:
    default_target: True
    input:
        final_targets(),
