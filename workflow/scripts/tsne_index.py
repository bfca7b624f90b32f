"""Rule tsne_index (scalable mode): the reference spectra's neighbour index for placement."""

from gaiacnn import job

j = job.start()
from gaiacnn import tsne  # noqa: E402

tsne.run_tsne_index(j.input.training, j.input.observed, j.output[0], tsne_cfg=j.params.tsne)
