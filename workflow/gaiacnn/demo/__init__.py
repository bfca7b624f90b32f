"""Offline demo survey: a physically motivated stand-in for Gaia DR3 RVS + XP + APOGEE.

``gaiacnn.demo.physics`` draws stars (labels, Galactic positions, binaries and
out-of-distribution populations) and computes their RVS spectra, XP coefficients,
photometry, parallaxes and S/N, plus per-star Cramér–Rao bounds on the labels.
"""
