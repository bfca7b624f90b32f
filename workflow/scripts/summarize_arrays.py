"""Rule summarize_arrays: N per sample and what each dataset is used for (or why it is not),
printed to the log and written to a text file."""

import sys

from gaiacnn import job

j = job.start(setup_logging=False)
from gaiacnn import arrays  # noqa: E402

paths = dict(zip(("training", "observed"), j.input, strict=True))
print(arrays.summarize(paths, j.output[0], **j.kwargs()), file=sys.stderr)
