"""The [alpha/M]-[M/H] plane across the Galaxy (Fig. 24, Sect. 7): observed giants at low
S/N inside the training limits, in bins of Galactocentric radius R and height |Z|.

Positions: ICRS ra/dec (catalogue columns ``ra``, ``dec``) and a distance
(``galactic.distance``, :func:`galactic_distance`) transformed with astropy's
:class:`~astropy.coordinates.Galactocentric` frame at its defaults (astropy >= 4:
R_sun = 8.122 kpc, z_sun = 20.8 pc, GRAVITY 2018 / Bennett & Bovy 2019).  The paper used
StarHorse distances (Queiroz et al. 2023) and R_sun = 8.19 kpc: give such a table as
``figures.external.distances`` (:func:`gaiacnn.figures.external.read_distances`); without
one, 1/parallax is the fallback (the demo's).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from astropy import units as u
from astropy.coordinates import Galactocentric, SkyCoord

from gaiacnn.figures import external
from gaiacnn.figures import style as st
from gaiacnn.figures.context import Context, Skip, metallicity_note
from gaiacnn.figures.render import Rendered, figure

#: config ``figures.galactic`` defaults (config/config.yaml).
DEFAULT_GALACTIC = {
    "distance": "auto",
    "snr": (15.0, 25.0),
    "max_logg": 2.2,
    "r_edges": (0.0, 4.0, 8.0, 12.0, 16.0),
    "abs_z_edges": (0.0, 0.5, 1.0, 1.5, 4.0),
}
#: Plot range of [M/H] and [alpha/M] [dex] (as Fig. 14).
PLANE_RANGE = ((-2.0, 0.6), (-0.15, 0.45))
#: Density contours at these fractions of a panel's (smoothed) peak count, drawn in panels
#: of at least CONTOUR_MIN_STARS stars (sparser ones would only circle single stars).
CONTOUR_FRACTIONS = (0.1, 0.3, 0.6)
CONTOUR_MIN_STARS = 100


def galactocentric_rz(
    ra_deg: np.ndarray, dec_deg: np.ndarray, distance_kpc: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Galactocentric cylindrical radius R = sqrt(x^2 + y^2) and height Z = z [kpc] of stars
    at ICRS (ra, dec) [deg] and heliocentric ``distance_kpc``, with astropy's default
    :class:`~astropy.coordinates.Galactocentric` frame.  Vectorised; NaN where the distance
    is not positive and finite or the position not finite."""
    ra = np.asarray(ra_deg, dtype=float)
    dec = np.asarray(dec_deg, dtype=float)
    d = np.asarray(distance_kpc, dtype=float)
    ra, dec, d = np.broadcast_arrays(ra, dec, d)
    r_kpc = np.full(ra.shape, np.nan)
    z_kpc = np.full(ra.shape, np.nan)
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(ra) & np.isfinite(dec) & np.isfinite(d) & (d > 0)
    if ok.any():
        c = SkyCoord(ra=ra[ok] * u.deg, dec=dec[ok] * u.deg, distance=d[ok] * u.kpc, frame="icrs")
        g = c.transform_to(Galactocentric())
        x, y, z = (g.cartesian.xyz.to_value(u.kpc)[i] for i in range(3))
        r_kpc[ok] = np.hypot(x, y)
        z_kpc[ok] = z
    return r_kpc, z_kpc


#: ``figures.galactic.distance`` values with a meaning (any other value names a catalogue
#: column in kpc): the distance table when given, else 1/parallax; the distance table;
#: 1 / parallax [mas].
AUTO, TABLE, PARALLAX = "auto", "table", "1/parallax"


def _setting(source: str) -> str:
    """``source`` as :data:`AUTO`, :data:`TABLE` or :data:`PARALLAX` when it is one of them
    (case and spaces aside), else unchanged (a catalogue column)."""
    key = str(source).replace(" ", "").lower()
    return key if key in (AUTO, TABLE, PARALLAX) else str(source)


@dataclass
class GalacticDistance:
    """Heliocentric distances [kpc] of every catalogue star (NaN where there is none), how
    they were obtained (caption words) and, from a distance table, the table itself (its
    dropped rows and the stars it lacks)."""

    kpc: np.ndarray
    text: str
    table: external.Distances | None = None


def galactic_distance(ctx: Context, source: str = AUTO) -> GalacticDistance:
    """The distances of Fig. 24 from ``figures.galactic.distance`` = ``source``:

    * ``auto`` (default): the distance table (``figures.external.distances``) when it is
      given, else 1/parallax, the fallback (so stated in the caption);
    * ``table``: the distance table (:func:`gaiacnn.figures.external.read_distances`; a
      :class:`ValueError` when none is given);
    * ``1/parallax``: parallax [mas] inverted, NaN where not positive;
    * anything else: the catalogue column of that name, in kpc.

    :class:`Skip` when the data lack the parallax or the column, or none of the table's
    stars is in the catalogue; :class:`~gaiacnn.figures.external.ExternalTableError` when
    the table cannot be used."""
    setting = _setting(source)
    given = external.configured(ctx, "distances") is not None
    if setting == TABLE and not given:
        raise ValueError(
            "figures.galactic.distance is 'table' but figures.external.distances is null: "
            "give the distance table (source_id, dist50 or distance in kpc) or set "
            "figures.galactic.distance to auto or 1/parallax"
        )
    if setting == TABLE or (setting == AUTO and given):
        t = external.read_distances(ctx)
        text = (
            f"from the distance table {t.path.name} (column {t.column} [kpc]; "
            f"{t.n_matched} of its {t.n_table} stars in the catalogue, {t.n_dropped} rows "
            "with a distance <= 0 or NaN dropped)"
        )
        return GalacticDistance(t.distance_kpc, text, t)
    if setting in (AUTO, PARALLAX):
        text = "1/parallax (no zero-point correction)"
        if setting == AUTO:
            text = (
                "1/parallax, the fallback: no distance table given (figures.external."
                "distances is null; no parallax zero-point correction)"
            )
        return GalacticDistance(distance_kpc(ctx, PARALLAX), text)
    return GalacticDistance(distance_kpc(ctx, setting), f"the catalogue column {setting} [kpc]")


def distance_kpc(ctx: Context, source: str) -> np.ndarray:
    """Heliocentric distance [kpc] of every catalogue star: ``1/parallax`` (parallax in mas,
    NaN where not positive), the distance table (``auto``/``table``,
    :func:`galactic_distance`) or the catalogue column ``source`` in kpc; :class:`Skip`
    when the data have no parallax (or no such column)."""
    setting = _setting(source)
    if setting == PARALLAX:
        plx = ctx.measured("parallax")
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(plx > 0, 1.0 / plx, np.nan)
    if setting in (AUTO, TABLE):
        return galactic_distance(ctx, setting).kpc
    return ctx.column(source)


def _frame_text() -> str:
    f = Galactocentric()
    return (
        f"astropy Galactocentric defaults (R_sun = {f.galcen_distance.to_value(u.kpc):g} kpc, "
        f"z_sun = {f.z_sun.to_value(u.pc):g} pc)"
    )


def _smoothed(h: np.ndarray) -> np.ndarray:
    """A 3 x 3 box average of a 2-D histogram (edges padded): steadier contours."""
    p = np.pad(h, 1, mode="edge")
    return sum(p[i : i + h.shape[0], j : j + h.shape[1]] for i in range(3) for j in range(3)) / 9


@figure(24)
def alpha_vs_metallicity_galactic(ctx: Context) -> Iterator[Rendered]:
    """Fig. 24 (Sect. 7): [alpha/M] [dex] against [M/H] [dex] of the observed giants inside
    the training limits at low S/N (``figures.galactic``), in bins of Galactocentric R and
    |Z| [kpc] from ra/dec and :func:`galactic_distance`."""
    cfg = {**DEFAULT_GALACTIC, **dict(ctx.cfg.get("galactic", {}) or {})}
    missing = [x for x in ("logg", "alpha_m") if x not in ctx.labels]
    metal = ctx.metallicity()  # [Fe/H] stands in for a missing [M/H]
    if metal is None:
        missing.append("m_h (nor fe_h)")
    if missing:
        raise Skip(f"the catalogue has no label {', '.join(missing)}")
    if not {"ra", "dec"} <= set(ctx.table.columns):
        raise Skip(
            "the catalogue has no ra/dec columns (the arrays files lack astrometry/ra, "
            "astrometry/dec): no Galactocentric positions"
        )
    min_stars = int(ctx.cfg.get("min_stars_per_panel", 20))
    snr_lo, snr_hi = (float(x) for x in cfg["snr"])
    max_logg = float(cfg["max_logg"])
    r_edges = np.asarray(cfg["r_edges"], dtype=float)
    z_edges = np.asarray(cfg["abs_z_edges"], dtype=float)
    snr = ctx.measured("rvs_snr")  # the paper's low-S/N selection
    dist = galactic_distance(ctx, str(cfg["distance"]))
    logg, mh, am = (ctx.column(x) for x in ("logg", metal, "alpha_m"))
    with np.errstate(invalid="ignore"):
        sel = (
            ctx.inside
            & (snr >= snr_lo)
            & (snr <= snr_hi)
            & (logg <= max_logg)
            & np.isfinite(mh)
            & np.isfinite(am)
        )
    rows = np.flatnonzero(sel)
    r_kpc, z_kpc = galactocentric_rz(
        ctx.column("ra")[rows], ctx.column("dec")[rows], dist.kpc[rows]
    )
    abs_z = np.abs(z_kpc)
    in_grid = (
        (r_kpc >= r_edges[0])
        & (r_kpc < r_edges[-1])
        & (abs_z >= z_edges[0])
        & (abs_z < z_edges[-1])
    )
    n_sel, n_grid = rows.size, int(in_grid.sum())
    if n_grid < min_stars:
        raise Skip(
            f"{n_grid} observed giants inside the training limits with {snr_lo:g} <= S/N <= "
            f"{snr_hi:g}, log g <= {max_logg:g} and a position in the R x |Z| grid "
            f"(fewer than min_stars_per_panel = {min_stars})"
        )
    mh, am = mh[rows], am[rows]
    ncols, nrows = r_edges.size - 1, z_edges.size - 1
    fig, axes = st.new_figure(
        nrows,
        ncols,
        width=st.PAGE_WIDTH,
        height=1.45 * nrows + 0.6,
        sharex=True,
        sharey=True,
    )
    bins = (np.linspace(*PLANE_RANGE[0], 45), np.linspace(*PLANE_RANGE[1], 35))
    drawn = 0
    for i in range(nrows):  # row 0 (top) holds the highest |Z| bin
        zi = nrows - 1 - i
        z_lo, z_hi = z_edges[zi], z_edges[zi + 1]
        for j in range(ncols):
            ax = axes[i, j]
            r_lo, r_hi = r_edges[j], r_edges[j + 1]
            c = in_grid & (r_kpc >= r_lo) & (r_kpc < r_hi) & (abs_z >= z_lo) & (abs_z < z_hi)
            n = int(c.sum())
            if n >= min_stars:
                drawn += n
                st.density(ax, mh[c], am[c], bins=bins)
                h, xe, ye = np.histogram2d(mh[c], am[c], bins=bins)
                hs = _smoothed(h)
                if n >= CONTOUR_MIN_STARS and hs.max() > 0:
                    levels = sorted({f * hs.max() for f in CONTOUR_FRACTIONS})
                    xc, yc = 0.5 * (xe[1:] + xe[:-1]), 0.5 * (ye[1:] + ye[:-1])
                    ax.contour(xc, yc, hs.T, levels=levels, colors="k", linewidths=0.6)
            st.corner_text(ax, st.stars(n), "lower left")
            if n < min_stars:
                st.corner_text(ax, f"< {min_stars}: not drawn", "upper right")
            ax.set_xlim(*PLANE_RANGE[0])
            ax.set_ylim(*PLANE_RANGE[1])
            if i == 0:
                ax.set_title(f"{r_lo:g} $\\leq$ R < {r_hi:g} kpc", fontsize=8)
            if j == 0:
                ax.set_ylabel(f"{z_lo:g} $\\leq$ |Z| < {z_hi:g} kpc\n" + st.label_text("alpha_m"))
            if i == nrows - 1:
                ax.set_xlabel(st.label_text(metal))
    no_distance = ""
    if dist.table is not None:
        n_dropped = int(dist.table.dropped[rows].sum())
        n_absent = int((~np.isfinite(dist.table.distance_kpc[rows])).sum()) - n_dropped
        no_distance = (
            f" Selected stars without a table distance: {n_dropped} with a distance <= 0 or "
            f"NaN (dropped), {n_absent} not in the table."
        )
    yield Rendered(
        "fig24_alpha_m_h_galactic",
        fig,
        f"[alpha/M] against {st.label_name(metal)} (CNN labels) of {st.stars(n_grid)}: "
        "observed giants inside the training limits (flag_boundary "
        + ("all zeros" if not ctx.unavailable_digits else "without a digit 1")
        + f") with {snr_lo:g} <= S/N <= {snr_hi:g} "
        f"and log g <= {max_logg:g}, in bins of Galactocentric radius R (columns) and height "
        f"|Z| (rows, high |Z| at the top); 2-D histograms (log colour scale from 1 to each "
        f"panel's maximum) and, in panels of >= {CONTOUR_MIN_STARS} stars, contours at "
        f"{', '.join(f'{f:.0%}' for f in CONTOUR_FRACTIONS)} of the smoothed peak; "
        f"panels with < {min_stars} stars not drawn ({st.stars(drawn)} drawn; "
        f"{st.stars(n_sel - n_grid)} selected but outside the grid or without a distance). "
        f"Positions from ra/dec and distances {dist.text}, {_frame_text()}."
        + no_distance
        + metallicity_note(metal)
        + ctx.flag_note(),
        n_grid,
    )


FIGURES = [alpha_vs_metallicity_galactic]
