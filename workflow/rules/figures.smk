# Every validation figure the data allows (SPEC stage 8), as PNG and PDF under
# results/figures/, each registered for `snakemake --report` with what it shows and how
# many stars it shows (report columns, from results/figures/figures.json).


rule figures:
    input:
        **figure_inputs(),
    output:
        report(
            directory("results/figures"),
            patterns=["{name}.png", "not_drawn/{name}.txt"],
            caption="../report/figure.rst",
            category="Validation figures",
            labels=figure_report_labels,
        ),
    log:
        "results/logs/figures.log",
    benchmark:
        "results/benchmarks/figures.tsv"
    conda:
        "../../envs/figures.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        figures=config["figures"],
        snr_edges=config["evaluation"]["snr_edges"],
    script:
        "../scripts/figures.py"
