"""Rule demo_survey: generate the offline demo survey."""

from gaiacnn import job

j = job.start()
from gaiacnn.demo import survey  # noqa: E402

survey.run_demo_survey(j.params.demo, j.output.gaia, j.output.allstar, j.output.raw, j.output.truth)
