"""Rule predict_shard: every member's labels for one shard of one sample, the shard read once."""

from gaiacnn import job

j = job.start()
from gaiacnn import ensemble  # noqa: E402

ensemble.run_predict_members(
    j.input.models,
    j.input.arrays,
    j.input.rows,
    list(j.output),
    # the training sample is also predicted with every parallax withheld: the held-out
    # residuals the calibration of withheld stars is fitted on
    **j.kwargs(
        shard=int(j.wildcards.shard),
        withheld_too=j.wildcards.sample == "training",
        threads=j.threads,
    ),
)
