"""gaiacnn: Gaia DR3 RVS + XP + photometry hybrid-CNN stellar labels (Guiglion et al. 2024).

One module per stage, each with the public ``run_*`` entry point its rules' scripts call
(``gaiacnn.job`` gives a script its Snakemake job, ``gaiacnn.logs`` the log set-up):

* ``archive``: the Gaia archive query and DataLink products, the APOGEE DR17 download;
* ``demo``: the offline demo survey (``demo.survey``; ``demo.physics``, its spectra,
  photometry, populations and Cramer-Rao bounds);
* ``selection``: the crossmatch and the quality cuts (Sect. 2);
* ``layout``: the HDF5 interchange layout (dataset names, checks, writing);
* ``arrays``: the sample files (built from the archive or demo, or imported), summaries;
* ``spectra``: the RVS grid and NaN filling; ``tables``: FITS/CSV columns;
* ``model``: the hybrid CNN (architecture, scalers, augmentation, training, prediction);
* ``ensemble``: members, prediction shards, aggregation and the ``sigma_*`` calibration;
* ``tsne``: the t-SNE maps (features, maps, placement, classification; Sect. 5.1);
* ``flags``: the boundary flag (Sect. 5.2); ``catalogue``: the catalogue files;
* ``evaluation``: the demo's precision and flag tables against the truth;
* ``figures``: every validation figure; ``config``: the schema and its validation;
* ``io``, ``shards``, ``memory``, ``constants``, ``cli`` (``gaiacnn validate``/``summary``).
"""

__version__ = "0.1.0"
