"""Rule apogee_download: the APOGEE DR17 allStar file, resumable and verified."""

from gaiacnn import job

j = job.start()
from gaiacnn import archive  # noqa: E402

archive.run_apogee_download(j.params.apogee, j.output[0])
