"""Rule tsne_place (scalable mode): place one shard of observed spectra into every map."""

from gaiacnn import job

j = job.start()
from gaiacnn import tsne  # noqa: E402

tsne.run_tsne_place(
    j.input.observed,
    j.input.index,
    list(j.input.embeddings),
    j.output[0],
    shard=int(j.wildcards.shard),
    tsne_cfg=j.params.tsne,
)
