# Training-like or not: t-SNE maps at four perplexities (Sect. 5.1), one job per
# perplexity (joint mode), or, per reference map set (tsne.reference_maps), one reference
# map per perplexity and one placement job per shard of spectra (tsne.place_shard_rows),
# into every map of the set (scalable mode); then the boundary flag added to the
# catalogue (Sect. 5.2).  The maps of one mode (of one set) share one nearest-neighbour
# graph, searched once for the largest perplexity.


rule tsne_neighbours:
    input:
        training="results/arrays/training.h5",
        observed="results/arrays/observed.h5",
    output:
        "results/tsne/joint/neighbours.npz",
    log:
        "results/logs/tsne_neighbours_joint.log",
    benchmark:
        "results/benchmarks/tsne_neighbours_joint.tsv"
    conda:
        "../../envs/tsne.yaml"
    threads: 2
    resources:
        mem_mb=8000,
        runtime=240,
    params:
        tsne=config["tsne"],
        mode="joint",
    script:
        "../scripts/tsne_neighbours.py"


# scalable mode: each reference map set r{ref} (tsne.reference_maps) has its own graph of
# its own reference subsample (seed tsne.seed + ref)
use rule tsne_neighbours as tsne_reference_neighbours with:
    output:
        "results/tsne/scalable/r{ref}/neighbours.npz",
    log:
        "results/logs/tsne_neighbours_scalable_r{ref}.log",
    benchmark:
        "results/benchmarks/tsne_neighbours_scalable_r{ref}.tsv"
    params:
        tsne=tsne_set_config,
        mode="scalable",


rule tsne_joint:
    input:
        graph="results/tsne/joint/neighbours.npz",
    output:
        "results/tsne/joint/p{perplexity}.h5",
    log:
        "results/logs/tsne_joint_p{perplexity}.log",
    benchmark:
        "results/benchmarks/tsne_joint_p{perplexity}.tsv"
    conda:
        "../../envs/tsne.yaml"
    threads: 2
    resources:
        mem_mb=8000,
        runtime=240,
    params:
        tsne=config["tsne"],
    script:
        "../scripts/tsne_joint.py"


rule tsne_reference:
    input:
        graph="results/tsne/scalable/r{ref}/neighbours.npz",
    output:
        embedding="results/tsne/scalable/r{ref}/p{perplexity}/embedding.h5",
        map="results/tsne/scalable/r{ref}/p{perplexity}/reference.h5",
    log:
        "results/logs/tsne_reference_r{ref}_p{perplexity}.log",
    benchmark:
        "results/benchmarks/tsne_reference_r{ref}_p{perplexity}.tsv"
    conda:
        "../../envs/tsne.yaml"
    threads: 2
    resources:
        mem_mb=8000,
        runtime=240,
    params:
        tsne=tsne_set_config,
    script:
        "../scripts/tsne_reference.py"


rule tsne_index:
    input:
        training="results/arrays/training.h5",
        observed="results/arrays/observed.h5",
    output:
        "results/tsne/scalable/r{ref}/index.npz",
    log:
        "results/logs/tsne_index_r{ref}.log",
    benchmark:
        "results/benchmarks/tsne_index_r{ref}.tsv"
    conda:
        "../../envs/tsne.yaml"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=60,
    params:
        tsne=tsne_set_config,
    script:
        "../scripts/tsne_index.py"


rule tsne_place:
    input:
        observed="results/arrays/observed.h5",
        index="results/tsne/scalable/r{ref}/index.npz",
        embeddings=tsne_reference_embeddings,
    output:
        "results/tsne/scalable/r{ref}/shard{shard}.h5",
    log:
        "results/logs/tsne_place_r{ref}_shard{shard}.log",
    benchmark:
        "results/benchmarks/tsne_place_r{ref}_shard{shard}.tsv"
    conda:
        "../../envs/tsne.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=240,
    params:
        tsne=tsne_set_config,
    script:
        "../scripts/tsne_place.py"


rule tsne_gather:
    input:
        reference="results/tsne/scalable/r{ref}/p{perplexity}/reference.h5",
        shards=tsne_shards,
        observed="results/arrays/observed.h5",
    output:
        "results/tsne/scalable/r{ref}/p{perplexity}.h5",
    log:
        "results/logs/tsne_gather_r{ref}_p{perplexity}.log",
    benchmark:
        "results/benchmarks/tsne_gather_r{ref}_p{perplexity}.tsv"
    conda:
        "../../envs/tsne.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        tsne=tsne_set_config,
    script:
        "../scripts/tsne_gather.py"


rule tsne_classify:
    input:
        maps=tsne_maps(),
        observed="results/arrays/observed.h5",
    output:
        "results/tsne/training_like.h5",
    log:
        "results/logs/tsne_classify.log",
    benchmark:
        "results/benchmarks/tsne_classify.tsv"
    conda:
        "../../envs/tsne.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    script:
        "../scripts/tsne_classify.py"


rule flag_catalogue:
    input:
        labels="results/ensemble/labels.fits",
        tsne="results/tsne/training_like.h5",
        model="results/ensemble/uncertainty_model.json",
    output:
        **catalogue_outputs(),
    log:
        "results/logs/flag_catalogue.log",
    benchmark:
        "results/benchmarks/flag_catalogue.tsv"
    conda:
        "../../envs/tsne.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        labels=model_labels(),
        input_digit=config["flags"]["input_digit"],
    script:
        "../scripts/flag_catalogue.py"


rule evaluate_flags:
    input:
        catalogue="results/catalogue/catalogue.fits",
        truth="results/demo/truth.h5",
        model="results/ensemble/uncertainty_model.json",
    output:
        tsne="results/evaluation/tsne_confusion.tsv",
        inputs="results/evaluation/input_flag.tsv",
    log:
        "results/logs/evaluate_flags.log",
    benchmark:
        "results/benchmarks/evaluate_flags.tsv"
    conda:
        "../../envs/tsne.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    script:
        "../scripts/evaluate_flags.py"
