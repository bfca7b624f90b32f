"""Rule tsne_classify: training-like in all maps, per observed star."""

from gaiacnn import job

j = job.start()
from gaiacnn import tsne  # noqa: E402

tsne.run_tsne_classify(list(j.input.maps), j.input.observed, j.output[0])
