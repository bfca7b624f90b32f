# The trained ensemble as one directory to share (results/bundle/): its members, the
# input contract, the uncertainty model, the flag's limits, the run's t-SNE classes and
# what places new spectra into its maps, the resolved config, a model card and a
# manifest of SHA-256 sums (gaiacnn.bundle; README:
# "Share a trained ensemble"). `gaiacnn predict results/bundle NEW.h5 -o catalogue.fits`
# applies it to any file in the layout; with ensemble.bundle set, rule bundle_catalogue
# does the same for the configured observed sample, and nothing is trained.


rule export_bundle:
    input:
        models=member_models(),
        scalers=member_scalers(),
        uncertainty_model="results/ensemble/uncertainty_model.json",
        training="results/arrays/training.h5",
        observed="results/arrays/observed.h5",
        tsne="results/tsne/training_like.h5",
        maps=tsne_maps(),
        catalogue="results/catalogue/catalogue.fits",
    output:
        directory("results/bundle"),
    log:
        "results/logs/export_bundle.log",
    benchmark:
        "results/benchmarks/export_bundle.tsv"
    conda:
        "../../envs/ensemble.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        config=config,
        config_hash=CONFIG_HASH,
        labels=model_labels(),
        input_neighbours=config["flags"]["input_neighbours"],
        input_quantile=config["flags"]["input_quantile"],
        input_digit=config["flags"]["input_digit"],
    script:
        "../scripts/export_bundle.py"


if BUNDLE:

    ruleorder: bundle_catalogue > flag_catalogue

    rule bundle_catalogue:
        input:
            observed="results/arrays/observed.h5",
            # the bundle's manifest: a new bundle (another manifest) makes the catalogue anew
            manifest=f"{BUNDLE}/MANIFEST.sha256",
        output:
            **catalogue_outputs(),
        log:
            "results/logs/bundle_catalogue.log",
        benchmark:
            "results/benchmarks/bundle_catalogue.tsv"
        conda:
            "../../envs/ensemble.yaml"
        threads: 2
        resources:
            mem_mb=4000,
            runtime=240,
        params:
            bundle=BUNDLE,
            settings=prediction_settings(),
        script:
            "../scripts/bundle_catalogue.py"
