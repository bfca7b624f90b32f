"""Rule file_cut_report (data.source: files): the imports' cut reports as one table."""

from gaiacnn import job

j = job.start()
from gaiacnn import selection  # noqa: E402

selection.run_file_cut_report(list(j.input), j.output[0])
