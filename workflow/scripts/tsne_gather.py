"""Rule tsne_gather (scalable mode): one perplexity's reference map and the
stars every shard placed into it, as one map (observed stars in the observed file's order)."""

from gaiacnn import job

j = job.start()
from gaiacnn import tsne  # noqa: E402

tsne.run_tsne_gather(
    j.input.reference,
    list(j.input.shards),
    j.input.observed,
    j.output[0],
    perplexity=float(j.wildcards.perplexity),
    tsne_cfg=j.params.tsne,
)
