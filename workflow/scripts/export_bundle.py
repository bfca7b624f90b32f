"""Rule export_bundle: the trained ensemble as one directory to share (gaiacnn.bundle)."""

import os

from gaiacnn import job

j = job.start()
from gaiacnn import bundle  # noqa: E402

bundle.export(
    j.output[0],
    member_dirs=[os.path.dirname(p) for p in j.input.models],
    uncertainty_model=j.input.uncertainty_model,
    training_arrays=j.input.training,
    observed_arrays=j.input.observed,
    tsne_file=j.input.tsne,
    map_files=list(j.input.maps),
    catalogue_fits=j.input.catalogue,
    **j.kwargs(),
)
