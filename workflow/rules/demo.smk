# The offline demo survey, shaped like the Gaia archive and APOGEE DR17.


rule demo_survey:
    output:
        gaia="results/demo/gaia_source.fits",
        allstar="results/demo/allStar.fits",
        raw="results/demo/rvs_xp.h5",
        truth="results/demo/truth.h5",
    log:
        "results/logs/demo_survey.log",
    benchmark:
        "results/benchmarks/demo_survey.tsv"
    conda:
        "../../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=120,
    params:
        # demo.datasets shapes the arrays, not the survey: changing it reruns build_arrays only
        demo={k: v for k, v in config["demo"].items() if k != "datasets"},
    script:
        "../scripts/demo_survey.py"
