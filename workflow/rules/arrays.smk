# The HDF5 arrays of each sample in the interchange layout (SPEC stage 3).

if config["data"]["source"] == "files":

    rule import_arrays:
        input:
            user_file,
        output:
            arrays="results/arrays/{sample}.h5",
            report="results/samples/cut_report_{sample}.tsv",
        log:
            "results/logs/import_arrays_{sample}.log",
        benchmark:
            "results/benchmarks/import_arrays_{sample}.tsv"
        conda:
            "../../envs/data.yaml"
        threads: 1
        resources:
            mem_mb=2000,
            runtime=120,
        params:
            labels=label_names(),
            rvs_cfg=config["rvs"],
            arrays_cfg=config["arrays"],
            provenance=provenance(),
            training_cuts=config["selection"]["training"],
            cuts=config["data"]["files_cuts"],
        script:
            "../scripts/import_arrays.py"

    # the imports' per-star cuts as one report (data.source: files)
    rule file_cut_report:
        input:
            expand("results/samples/cut_report_{sample}.tsv", sample=SAMPLES),
        output:
            "results/samples/cut_report.tsv",
        log:
            "results/logs/file_cut_report.log",
        conda:
            "../../envs/data.yaml"
        threads: 1
        resources:
            mem_mb=500,
            runtime=10,
        script:
            "../scripts/file_cut_report.py"

else:

    rule build_arrays:
        input:
            raw=raw_store(),
            gaia=source_tables()["gaia"],
            sample="results/samples/{sample}.tsv",
        output:
            "results/arrays/{sample}.h5",
        log:
            "results/logs/build_arrays_{sample}.log",
        benchmark:
            "results/benchmarks/build_arrays_{sample}.tsv"
        conda:
            "../../envs/data.yaml"
        threads: 1
        resources:
            mem_mb=2000,
            runtime=120,
        params:
            labels=label_names(),
            rvs_cfg=config["rvs"],
            # + the dataset groups to write: demo.datasets for the demo source, None (all
            # the raw store has) for gaia_dr3
            arrays_cfg={
                **config["arrays"],
                "datasets": (
                    config["demo"]["datasets"]
                    if config["data"]["source"] == "demo"
                    else None
                ),
            },
            provenance=provenance(),
        script:
            "../scripts/build_arrays.py"


# The number of stars of each arrays file: the prediction and the t-SNE placement run on
# shards of it (prediction.shard_rows, tsne.place_shard_rows), known only once it exists.
checkpoint count_rows:
    input:
        "results/arrays/{sample}.h5",
    output:
        "results/arrays/{sample}_rows.json",
    log:
        "results/logs/count_rows_{sample}.log",
    benchmark:
        "results/benchmarks/count_rows_{sample}.tsv"
    conda:
        "../../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=500,
        runtime=10,
    script:
        "../scripts/count_rows.py"


rule summarize_arrays:
    input:
        expand("results/arrays/{sample}.h5", sample=SAMPLES),
    output:
        "results/arrays/summary.txt",
    log:
        "results/logs/summarize_arrays.log",
    conda:
        "../../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=500,
        runtime=10,
    params:
        branches=config["model"]["branches"],
        xp_input=config["model"]["xp_input"],
        phot_input=config["model"]["phot_input"],
        labels=model_labels(),
        tsne_choice=config["tsne"]["spectra"],
    script:
        "../scripts/summarize_arrays.py"
