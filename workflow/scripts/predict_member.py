"""Rule predict_member: one member's labels for one shard of one sample, streamed in chunks."""

from gaiacnn import job

j = job.start()
from gaiacnn import ensemble  # noqa: E402

ensemble.run_predict_member(
    j.input.model,
    j.input.arrays,
    j.input.rows,
    j.output[0],
    # the training sample is also predicted with every parallax withheld: the held-out
    # residuals the calibration of withheld stars is fitted on
    **j.kwargs(
        shard=int(j.wildcards.shard),
        withheld_too=j.wildcards.sample == "training",
        threads=j.threads,
    ),
)
