"""Rule bundle_catalogue (ensemble.bundle): the observed sample's catalogue from a trained
ensemble's bundle, with no training (gaiacnn.bundle.predict)."""

from gaiacnn import job

j = job.start()
from gaiacnn import bundle  # noqa: E402

bundle.predict(
    j.params.bundle,
    j.input.observed,
    j.output.fits,
    csv_out=dict(j.output.items()).get("csv"),
    parquet_out=dict(j.output.items()).get("parquet"),
    settings=j.params.settings,
    threads=j.threads,
)
