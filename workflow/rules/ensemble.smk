# The hybrid-CNN ensemble: one job per member (split x seed); one prediction job per shard
# of a sample (prediction.shard_rows stars) for all members, or per member and shard
# (prediction.members_per_job: one, on clusters); gathered per member; aggregation.


rule train_member:
    input:
        "results/arrays/training.h5",
    output:
        model="results/ensemble/members/split{split}_seed{seed}/model.keras",
        scalers="results/ensemble/members/split{split}_seed{seed}/scalers.json",
        history="results/ensemble/members/split{split}_seed{seed}/history.json",
    log:
        "results/logs/train_member_split{split}_seed{seed}.log",
    benchmark:
        "results/benchmarks/train_member_split{split}_seed{seed}.tsv"
    conda:
        "../../envs/ensemble.yaml"
    threads: 2
    resources:
        mem_mb=6000,
        runtime=240,
    params:
        member=check_member,
        labels=model_labels(),
        branches=config["model"]["branches"],
        arch=config["model"]["arch"],
        training=config["model"]["training"],
        xp_input=config["model"]["xp_input"],
        phot_input=config["model"]["phot_input"],
    script:
        "../scripts/train_member.py"


if config["prediction"]["members_per_job"] == "all":

    rule predict_shard:
        input:
            models=member_models(),
            scalers=member_scalers(),
            arrays="results/arrays/{sample}.h5",
            rows="results/arrays/{sample}_rows.json",
        output:
            member_shard_outputs(),
        log:
            "results/logs/predict_shard_{sample}_shard{shard}.log",
        benchmark:
            "results/benchmarks/predict_shard_{sample}_shard{shard}.tsv"
        conda:
            "../../envs/ensemble.yaml"
        threads: 2
        resources:
            mem_mb=3000,  # peak RSS ~1.7 GiB for one member, a few MiB more per member
            runtime=120,
        params:
            prediction_cfg=prediction_settings(),
            noise_cfg=input_noise_settings(config["uncertainty"]),
        script:
            "../scripts/predict_shard.py"

else:

    rule predict_member:
        input:
            model="results/ensemble/members/split{split}_seed{seed}/model.keras",
            scalers="results/ensemble/members/split{split}_seed{seed}/scalers.json",
            arrays="results/arrays/{sample}.h5",
            rows="results/arrays/{sample}_rows.json",
        output:
            "results/ensemble/predictions/{sample}/split{split}_seed{seed}/shard{shard}.h5",
        log:
            "results/logs/predict_member_{sample}_split{split}_seed{seed}_shard{shard}.log",
        benchmark:
            "results/benchmarks/predict_member_{sample}_split{split}_seed{seed}_shard{shard}.tsv"
        conda:
            "../../envs/ensemble.yaml"
        threads: 2
        resources:
            mem_mb=3000,  # peak RSS ~1.7 GiB, independent of N (README: Benchmarks)
            runtime=120,
        params:
            prediction_cfg=prediction_settings(),
            noise_cfg=input_noise_settings(config["uncertainty"]),
        script:
            "../scripts/predict_member.py"


rule gather_predictions:
    input:
        shards=member_shards,
    output:
        "results/ensemble/predictions/{sample}/split{split}_seed{seed}.h5",
    log:
        "results/logs/gather_predictions_{sample}_split{split}_seed{seed}.log",
    benchmark:
        "results/benchmarks/gather_predictions_{sample}_split{split}_seed{seed}.tsv"
    conda:
        "../../envs/ensemble.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=30,
    script:
        "../scripts/gather_predictions.py"


rule aggregate_ensemble:
    input:
        training=member_predictions("training"),
        observed=member_predictions("observed"),
        # the members themselves, so that a dry run before the arrays exist (whose shards
        # are counted only then) already lists every train_member job
        models=member_models(),
        training_arrays="results/arrays/training.h5",
        observed_arrays="results/arrays/observed.h5",
    output:
        fits="results/ensemble/labels.fits",
        model="results/ensemble/uncertainty_model.json",
    log:
        "results/logs/aggregate_ensemble.log",
    benchmark:
        "results/benchmarks/aggregate_ensemble.tsv"
    conda:
        "../../envs/ensemble.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        labels=model_labels(),
        members=member_names(),
        uncertainty_cfg=config["uncertainty"],
        training_cfg=config["model"]["training"],
        flags_cfg=config["flags"],
        config_hash=CONFIG_HASH,
    script:
        "../scripts/aggregate_ensemble.py"


rule evaluate_demo:
    input:
        catalogue="results/ensemble/labels.fits",
        truth="results/demo/truth.h5",
        gaia_source="results/demo/gaia_source.fits",
        model="results/ensemble/uncertainty_model.json",
    output:
        precision="results/evaluation/precision.tsv",
        shift="results/evaluation/shift.tsv",
    log:
        "results/logs/evaluate_demo.log",
    conda:
        "../../envs/ensemble.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        labels=model_labels(),
        branches=config["model"]["branches"],
        snr_edges=config["evaluation"]["snr_edges"],
    script:
        "../scripts/evaluate_demo.py"
