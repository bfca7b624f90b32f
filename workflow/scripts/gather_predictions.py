"""Rule gather_predictions: one member's prediction shards of one sample as one file."""

from gaiacnn import job

j = job.start(c_level=False)
from gaiacnn import ensemble  # noqa: E402

ensemble.run_gather_predictions(list(j.input.shards), j.output[0])
