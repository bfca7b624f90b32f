"""Rule tsne_reference (scalable mode): the reference map and its saved embedding."""

from gaiacnn import job

j = job.start()
from gaiacnn import tsne  # noqa: E402

tsne.run_tsne_reference(
    j.input.graph,
    j.output.embedding,
    j.output.map,
    perplexity=float(j.wildcards.perplexity),
    tsne_cfg=j.params.tsne,
    threads=j.threads,
)
