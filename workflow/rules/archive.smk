# The real data (data.source: gaia_dr3): the Gaia DR3 archive and APOGEE DR17 (Sect. 2.1-2.4).
# The query and the allStar download feed select_samples; the spectra of the selected
# stars are then fetched in batches, cached under data.gaia.cache_dir (resumable).
if config["data"]["source"] == "gaia_dr3":

    # Network rules: on a cluster they run beside the controller on the login node, not
    # as SLURM jobs (compute nodes often have no internet).
    localrules:
        gaia_query,
        apogee_download,
        gaia_spectra,

    rule gaia_query:
        output:
            "results/gaia/gaia_source.fits",
        log:
            "results/logs/gaia_query.log",
        benchmark:
            "results/benchmarks/gaia_query.tsv"
        conda:
            "../../envs/archive.yaml"
        threads: 1
        resources:
            mem_mb=8000,
            runtime=720,
        params:
            gaia=config["data"]["gaia"],
        script:
            "../scripts/gaia_query.py"

    rule apogee_download:
        output:
            "results/apogee/allStar-dr17-synspec_rev1.fits",
        log:
            "results/logs/apogee_download.log",
        benchmark:
            "results/benchmarks/apogee_download.tsv"
        conda:
            "../../envs/archive.yaml"
        threads: 1
        resources:
            mem_mb=1000,
            runtime=720,
        params:
            apogee=config["data"]["apogee"],
        script:
            "../scripts/apogee_download.py"

    rule gaia_spectra:
        input:
            training="results/samples/training.tsv",
            observed="results/samples/observed.tsv",
        output:
            "results/gaia/rvs_xp.h5",
        log:
            "results/logs/gaia_spectra.log",
        benchmark:
            "results/benchmarks/gaia_spectra.tsv"
        conda:
            "../../envs/archive.yaml"
        threads: 1
        resources:
            mem_mb=4000,
            runtime=2880,
        params:
            gaia=config["data"]["gaia"],
            provenance=provenance(),
        script:
            "../scripts/gaia_spectra.py"
