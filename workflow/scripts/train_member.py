"""Rule train_member: train one ensemble member (split x seed)."""

from gaiacnn import job

j = job.start(stdout=True)
from gaiacnn import ensemble  # noqa: E402

ensemble.run_train_member(
    j.input[0],
    j.output.model,
    split=j.wildcards.split,
    seed=j.wildcards.seed,
    threads=j.threads,
    **j.kwargs("member"),
)
