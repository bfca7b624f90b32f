"""Rule predict_member: one member's labels for one shard of one sample, streamed in chunks."""

from gaiacnn import job

j = job.start()
from gaiacnn import ensemble  # noqa: E402

ensemble.run_predict_member(
    j.input.model,
    j.input.arrays,
    j.input.rows,
    j.output[0],
    **j.kwargs(shard=int(j.wildcards.shard), threads=j.threads),
)
