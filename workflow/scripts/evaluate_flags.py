"""Rule evaluate_flags (demo): the t-SNE digit of the flag against the true populations."""

from gaiacnn import job

j = job.start()
from gaiacnn import evaluation  # noqa: E402

evaluation.run_flag_evaluation(
    j.input.catalogue,
    j.input.truth,
    j.output.tsne,
    model_json=j.input.model,
    inputs_out=j.output.inputs,
)
