"""Validation figures (SPEC stage 8): one module per group of the paper's figures.

* :mod:`~gaiacnn.figures.style`: the one style (fonts, colour maps, label units, saving);
* :mod:`~gaiacnn.figures.context`: the data the figures read, loaded once;
* :mod:`~gaiacnn.figures.render`: the registry and :func:`~gaiacnn.figures.render.render_all`;
* :mod:`~gaiacnn.figures.samples`: the samples and the catalogue's labels (Figs. 1, 3, 4, 5,
  11, 14, 16, 18);
* :mod:`~gaiacnn.figures.accuracy`: residuals and uncertainties (Figs. 7, 8, 13, 15) and,
  on the demo, CNN - truth, Cramer-Rao ratios and sigma coverage;
* :mod:`~gaiacnn.figures.spectra`: RVS and XP gradients (Figs. 9, 10), mean spectra (12);
* :mod:`~gaiacnn.figures.tsne_maps`: the t-SNE maps (Figs. 17, A.1);
* :mod:`~gaiacnn.figures.galaxy`: [alpha/M]-[M/H] in Galactocentric R x Z bins (Fig. 24);
* :mod:`~gaiacnn.figures.external`: comparisons with external tables (Figs. 7 right, 20-23).
"""
