"""Rule tsne_neighbours: the neighbour graph shared by the t-SNE maps of every perplexity."""

from gaiacnn import job

j = job.start()
from gaiacnn import tsne  # noqa: E402

tsne.run_tsne_neighbours(
    j.input.training,
    j.input.observed,
    j.output[0],
    mode=j.params.mode,
    tsne_cfg=j.params.tsne,
    threads=j.threads,
)
