"""Training-like or not: t-SNE maps of the spectra (paper Sect. 5.1, Appendix A).

The training and observed RVS spectra (or, for a survey without them, the XP spectra:
:func:`choose_spectra`) are embedded together in 2-D at several
perplexities (30, 50, 75, 100).  In each map an observed star is *training-like* when its
distance to its ``m``-th nearest training star (``threshold_neighbours``) is within a
threshold taken from the training stars' own distances to their ``m``-th nearest other
training star (``threshold_rule``: a quantile of them, or a multiple of their median); it is
training-like overall only if it is so in every map.  With ``m = 1`` this is the distance to
the nearest training star; ``m > 1`` asks for the support of several training stars (the
k-nearest-neighbour distance outlier score), so that a lone training star at the edge of
the training sample does not make a whole region of unlike spectra training-like.  ``m``
grows with the training sample (:func:`support_neighbours`).

Two modes:

* ``joint`` (the paper): one embedding of everything per perplexity;
* ``scalable`` (Gaia DR4/DR5 sizes): embed a random subsample of the observed spectra with
  the training sample (by default the same share of it, :func:`reference_training_rows`),
  then place the other observed spectra into that fixed embedding in chunks (at the
  median position of their nearest reference spectra, optionally refined by openTSNE's
  ``TSNEEmbedding.transform``), one job per chunk; several independent sets of reference
  maps (``reference_maps``, :func:`reference_set_config`) classify a star together, by the mean
  of its distance over each map's threshold (:func:`ensemble_training_like`).

Before t-SNE the spectra may be reduced with a PCA (``pca_components``; 0 keeps all
pixels) fitted on the training spectra plus the observed ones embedded with them; t-SNE
neighbours are then found among the PCA scores.  Distances in a map are in t-SNE units.

The modules: :mod:`~gaiacnn.tsne.features` (the spectra embedded, the reference rows),
:mod:`~gaiacnn.tsne.maps` (graph, embedding, map files), :mod:`~gaiacnn.tsne.placement`
(scalable mode: placing the other observed spectra), :mod:`~gaiacnn.tsne.classify`
(thresholds and classes).  Each rule's entry point is a ``run_tsne_*`` function.
"""

from gaiacnn.tsne.classify import (
    MAX_SUPPORT_SHARE,
    Threshold,
    classify,
    combine_maps,
    ensemble_training_like,
    nearest_training_distance,
    run_tsne_classify,
    support_from_config,
    support_neighbours,
    threshold,
    threshold_from_config,
    training_nn_distances,
)
from gaiacnn.tsne.features import (
    DEFAULT_PERPLEXITIES,
    MAP_DATASETS,
    MAP_DTYPES,
    PLACED_DATASETS,
    REFERENCE_TRAINING,
    RVS_FLUX,
    SPECTRA,
    SPECTRA_CHOICES,
    STREAM_ROWS,
    THRESHOLD_RULES,
    Reducer,
    TsneError,
    choose_spectra,
    fit_reducer,
    iter_spectra,
    n_rows,
    read_spectra,
    reference_rows,
    reference_set_config,
    reference_training_rows,
    tsne_spectra,
)
from gaiacnn.tsne.maps import (
    REFERENCE_EMBEDDING_FORMAT,
    NeighbourGraph,
    ReferenceEmbedding,
    embed_graph,
    embedding_from_arrays,
    graph_neighbours,
    map_writer,
    neighbour_graph,
    portable_embedding,
    read_reference_embedding,
    run_tsne_joint,
    run_tsne_neighbours,
    run_tsne_reference,
    write_reference_embedding,
)
from gaiacnn.tsne.placement import (
    NeighbourIndex,
    PlacementSet,
    build_index,
    place_by_neighbours,
    placed_training_like,
    placement_set_from_maps,
    placement_shards,
    read_index,
    run_tsne_gather,
    run_tsne_index,
    run_tsne_place,
    write_index,
)

__all__ = [
    "DEFAULT_PERPLEXITIES",
    "MAP_DATASETS",
    "MAP_DTYPES",
    "MAX_SUPPORT_SHARE",
    "PLACED_DATASETS",
    "REFERENCE_EMBEDDING_FORMAT",
    "REFERENCE_TRAINING",
    "RVS_FLUX",
    "SPECTRA",
    "SPECTRA_CHOICES",
    "STREAM_ROWS",
    "THRESHOLD_RULES",
    "NeighbourGraph",
    "NeighbourIndex",
    "PlacementSet",
    "Reducer",
    "ReferenceEmbedding",
    "Threshold",
    "TsneError",
    "build_index",
    "choose_spectra",
    "classify",
    "combine_maps",
    "embed_graph",
    "embedding_from_arrays",
    "ensemble_training_like",
    "fit_reducer",
    "graph_neighbours",
    "iter_spectra",
    "map_writer",
    "n_rows",
    "nearest_training_distance",
    "neighbour_graph",
    "place_by_neighbours",
    "placed_training_like",
    "placement_set_from_maps",
    "placement_shards",
    "portable_embedding",
    "read_index",
    "read_reference_embedding",
    "read_spectra",
    "reference_rows",
    "reference_set_config",
    "reference_training_rows",
    "run_tsne_classify",
    "run_tsne_gather",
    "run_tsne_index",
    "run_tsne_joint",
    "run_tsne_neighbours",
    "run_tsne_place",
    "run_tsne_reference",
    "support_from_config",
    "support_neighbours",
    "threshold",
    "threshold_from_config",
    "training_nn_distances",
    "tsne_spectra",
    "write_index",
    "write_reference_embedding",
]
