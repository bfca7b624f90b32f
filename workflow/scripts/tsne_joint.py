"""Rule tsne_joint: one joint t-SNE map of the training + observed spectra."""

from gaiacnn import job

j = job.start()
from gaiacnn import tsne  # noqa: E402

tsne.run_tsne_joint(
    j.input.graph,
    j.output[0],
    perplexity=float(j.wildcards.perplexity),
    tsne_cfg=j.params.tsne,
    threads=j.threads,
)
