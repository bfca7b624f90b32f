"""gaiacnn: Gaia DR3 RVS + XP + photometry hybrid-CNN stellar labels (Guiglion et al. 2024).

One module per stage: ``archive`` (data access), ``selection`` (cuts, Sect. 2),
``layout`` (the HDF5 interchange layout), ``arrays`` (building the sample files),
``spectra`` (RVS grid and NaN filling), ``demo`` (the offline demo survey).
"""

__version__ = "0.1.0"
