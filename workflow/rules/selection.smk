# Crossmatch with APOGEE DR17 and the quality cuts of Sect. 2 (training / observed samples).


# data.source files: the imports make the cut report (workflow/rules/arrays.smk)
if config["data"]["source"] != "files":

    rule select_samples:
        input:
            unpack(source_tables),
        output:
            training="results/samples/training.tsv",
            observed="results/samples/observed.tsv",
            report="results/samples/cut_report.tsv",
        log:
            "results/logs/select_samples.log",
        benchmark:
            "results/benchmarks/select_samples.tsv"
        conda:
            "../../envs/data.yaml"
        threads: 1
        resources:
            mem_mb=4000,
            runtime=60,
        params:
            selection_cfg=config["selection"],
            label_columns=config["labels"],
        script:
            "../scripts/select_samples.py"
