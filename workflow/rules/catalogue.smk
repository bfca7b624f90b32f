# The catalogue as a HATS-partitioned copy (catalogue.hats, opt-in), for lsdb cross-matches
# with the Gaia DR3 HATS catalogues (gaiacnn.hats; docs/catalogue.md).

if config["catalogue"]["hats"] and not config["catalogue"]["parquet"]:
    sys.exit(
        "Configuration error: catalogue.hats is true but catalogue.parquet is false "
        "(the HATS copy is made from catalogue.parquet)"
    )


rule hats_catalogue:
    input:
        "results/catalogue/catalogue.parquet",
    output:
        directory("results/catalogue/hats"),
    log:
        "results/logs/hats_catalogue.log",
    benchmark:
        "results/benchmarks/hats_catalogue.tsv"
    conda:
        "../../envs/hats.yaml"
    threads: 1
    resources:
        # streaming: one row group plus one partition (gaiacnn.hats, stage_memory.py)
        mem_mb=4000,
        runtime=120,
    script:
        "../scripts/hats_catalogue.py"
