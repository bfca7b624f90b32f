"""Example spectra (Fig. 2) and the network's flow chart (Fig. 6): which training stars are
chosen and why, the skips, and that the flow chart follows the member's own layer graph."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
from figure_data import check_image, render_recorded

from gaiacnn import model
from gaiacnn.figures import architecture, spectra
from gaiacnn.figures.context import Context, Inputs, Skip
from gaiacnn.figures.render import registry

RC = spectra.ExamplePanel("red-clump star", (4500.0, 5100.0), (2.2, 2.8))
TWIN = spectra.ExamplePanel("solar twin", (5672.0, 5872.0), (4.24, 4.64))

#: (source_id, T_eff [K], log g, [M/H] [dex], S/N) of a synthetic training sample; the
#: comment says why each star is, or is not, chosen (targets [M/H] 0 and -0.87).
STARS = [
    (101, 4800.0, 2.5, 0.02, 30.0),  # RC near 0, lower S/N than 102
    (102, 4700.0, 2.6, -0.01, 80.0),  # RC, chosen for 0: highest S/N near 0
    (103, 4900.0, 2.4, 0.30, 500.0),  # RC, too far from 0 (> nearest + 0.1 dex)
    (104, 4850.0, 2.5, -0.85, 20.0),  # RC, nearest to -0.87 but lower S/N than 105
    (105, 4650.0, 2.7, -0.90, 25.0),  # RC, chosen for -0.87
    (106, 5500.0, 2.5, 0.00, 1000.0),  # too hot for the red clump
    (107, 4800.0, 2.5, np.nan, 900.0),  # RC without [M/H]
    (108, 4800.0, 2.5, 0.05, np.nan),  # RC near 0, S/N unknown
    (201, 5780.0, 4.40, -0.10, 50.0),  # twin, chosen for 0
    (202, 5700.0, 4.50, -0.60, 60.0),  # twin, the only one left for -0.87
    (203, 5900.0, 4.40, 0.00, 999.0),  # 128 K hotter than the Sun: no twin
    (204, 5772.0, 4.70, 0.00, 999.0),  # log g 0.26 above the Sun's: no twin
]


def _columns(stars=STARS) -> dict[str, np.ndarray]:
    a = np.array(stars, dtype=float)
    return {
        "source_id": a[:, 0].astype(np.int64),
        "teff": a[:, 1],
        "logg": a[:, 2],
        "m_h": a[:, 3],
        "snr": a[:, 4],
    }


def _chosen(stars=STARS, panels=(RC, TWIN), **kwargs) -> list[list[int]]:
    c = _columns(stars)
    got = spectra.example_stars(c["teff"], c["logg"], c["m_h"], c["snr"], panels, **kwargs)
    return [[int(c["source_id"][r]) for r in choice.rows] for choice in got]


# ---------------------------------------------------------------------- Fig. 2: selection
def test_example_stars_take_the_highest_snr_of_the_few_nearest_the_target():
    assert _chosen() == [[102, 105], [201, 202]]
    c = _columns()
    got = spectra.example_stars(c["teff"], c["logg"], c["m_h"], c["snr"], [RC, TWIN])
    assert [g.n_box for g in got] == [6, 2]  # 101-105, 108 / 201-202


def test_example_stars_without_snr_or_with_one_candidate_take_the_nearest():
    c = _columns()
    got = spectra.example_stars(c["teff"], c["logg"], c["m_h"], None, [RC])
    assert [int(c["source_id"][r]) for r in got[0].rows] == [102, 104]
    assert _chosen(panels=[RC], nearest=1) == [[102, 104]]
    assert _chosen(panels=[RC], tolerance=0.5) == [[103, 105]]  # 0.30 now close enough


def test_a_star_is_chosen_once_per_panel():
    stars = [(1, 4800.0, 2.5, 0.0, 10.0), (2, 4800.0, 2.5, 0.01, 5.0)]
    assert _chosen(stars, panels=[RC]) == [[1, 2]]  # -0.87: the other one, however far


def test_example_stars_skip_naming_the_box_with_too_few_stars():
    with pytest.raises(Skip, match=r"has only 1 solar twin .*5672 <= T_eff <= 5872 K"):
        _chosen(STARS[:9])
    no_rc = [s for s in STARS if s[0] > 200]
    with pytest.raises(Skip, match="has no red-clump star with a reference metallicity"):
        _chosen(no_rc)


def test_example_panels_read_the_red_clump_box_of_the_config(tmp_path):
    ctx = Context(_inputs(tmp_path), {"red_clump": {"teff": [4000, 4400], "logg": [1.5, 2.0]}})
    rc, twin = spectra.example_panels(ctx)
    assert (rc.teff, rc.logg, rc.m_h) == ((4000.0, 4400.0), (1.5, 2.0), (0.0, -0.87))
    assert twin.teff == (spectra.SOLAR_TEFF_K - 100, spectra.SOLAR_TEFF_K + 100)
    assert twin.logg == pytest.approx((4.24, 4.64))


# ---------------------------------------------------------------------- Fig. 2: rendering
P = 120
WL = np.linspace(846.0, 870.0, P)


def _training_file(
    path: Path, stars=STARS, *, metal: str = "m_h", rvs: bool = True, snr: bool = True
) -> Path:
    """A layout file of ``stars``: labels, S/N and RVS flux whose line depth grows with
    [M/H] (one Ca II-like line)."""
    c = _columns(stars)
    with h5py.File(path, "w") as h5:
        h5.attrs["schema_version"] = "1.0"
        h5["source_id"] = c["source_id"]
        h5["labels/teff"] = c["teff"].astype(np.float32)
        h5["labels/logg"] = c["logg"].astype(np.float32)
        h5[f"labels/{metal}"] = c["m_h"].astype(np.float32)
        if snr:
            h5["rvs/snr"] = c["snr"].astype(np.float32)
        if rvs:
            depth = 0.5 + 0.2 * np.nan_to_num(c["m_h"])[:, None]
            flux = 1.0 - depth * np.exp(-0.5 * ((WL - 854.2) / 0.3) ** 2)
            ds = h5.create_dataset("rvs/flux", data=flux.astype(np.float32))
            ds.attrs["wavelength_nm"] = WL
    return path


def _inputs(tmp_path: Path, members=(), **kwargs) -> Inputs:
    path = _training_file(tmp_path / "training.h5", **kwargs)
    missing = tmp_path / "not_read"
    return Inputs(missing, path, path, missing, members=list(members))


def _render(ctx: Context, out: Path, fn, texts: dict | None = None) -> tuple[dict, dict]:
    return render_recorded(ctx, out, [fn], texts)


def test_fig2_draws_the_chosen_stars_and_says_which(tmp_path):
    texts: dict = {}
    index, sizes = _render(
        Context(_inputs(tmp_path), {}), tmp_path / "f", spectra.example_spectra, texts
    )
    (entry,) = index["figures"]
    assert entry["name"] == "fig02_example_spectra" and entry["n_stars"] == 4
    check_image(tmp_path / "f" / "fig02_example_spectra.png", sizes[entry["name"]])
    caption = entry["caption"]
    for sid in (102, 105, 201, 202):
        assert f"Gaia DR3 {sid} " in caption
    for sid in (101, 103, 104, 106, 107, 108, 203, 204):
        assert f"Gaia DR3 {sid} " not in caption
    assert "6 stars in the box" in caption and "2 stars in the box" in caption
    assert "4 stars drawn" in caption and "stands in" not in caption


def test_fig2_follows_the_configured_red_clump_box(tmp_path):
    stars = [*STARS, (301, 4200.0, 1.8, 0.1, 40.0), (302, 4300.0, 1.7, -0.8, 40.0)]
    cfg = {"red_clump": {"teff": [4000, 4400], "logg": [1.5, 2.0]}}
    index, _ = _render(
        Context(_inputs(tmp_path, stars=stars), cfg), tmp_path / "f", spectra.example_spectra
    )
    caption = index["figures"][0]["caption"]
    assert "Gaia DR3 301 " in caption and "Gaia DR3 302 " in caption
    assert "Gaia DR3 102 " not in caption


def test_fig2_with_fe_h_or_without_snr_says_so(tmp_path):
    index, _ = _render(
        Context(_inputs(tmp_path, metal="fe_h", snr=False), {}),
        tmp_path / "f",
        spectra.example_spectra,
    )
    caption = index["figures"][0]["caption"]
    assert "[Fe/H] stands in for [M/H]" in caption
    assert "no rvs/snr: the nearest" in caption
    assert "Gaia DR3 104 " in caption  # nearest -0.87 without S/N


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"rvs": False}, "no rvs/flux in the arrays: the survey has no RVS spectra"),
        ({"stars": STARS[:8]}, "has no solar twin with a reference metallicity"),
    ],
)
def test_fig2_skips_with_the_reason(tmp_path, kwargs, words):
    index, _ = _render(Context(_inputs(tmp_path, **kwargs), {}), tmp_path / "f",
                       spectra.example_spectra)  # fmt: skip
    assert index["figures"] == []
    (skipped,) = index["skipped"]
    assert skipped["function"] == "example_spectra" and words in skipped["reason"]


# ---------------------------------------------------------------------- Fig. 6
SMALL = {"conv_filters": [3, 5, 7], "kernel_size": 4, "rvs_dense": 16, "xp_dense": 8}
LABELS = ["teff", "logg", "m_h"]


def _member(root: Path, n_pixels: int | None, n_phot: int | None, xp_length: int | None):
    """A member directory of an untrained :func:`gaiacnn.model.build_model` network."""
    net = model.build_model(n_pixels, n_phot, xp_length, len(LABELS), SMALL)
    branches = [b for b, n in (("rvs", n_pixels), ("phot", n_phot), ("xp", xp_length)) if n]
    scalers = model.Scalers(
        labels=LABELS,
        label_min=np.zeros(len(LABELS)),
        label_max=np.ones(len(LABELS)),
        branches=branches,
        phot_columns=["phot/g", "phot/bp", "phot/rp", "astrometry/parallax"][: n_phot or 0],
        n_pixels=n_pixels,
        xp_length=xp_length,
        xp_input="coefficients" if xp_length else None,
    )
    path = root / "split0_seed0"
    model._save_member(path, net, scalers, {"loss": [1.0]})
    return path, net


def _architecture(tmp_path: Path, member: Path | None):
    ctx = Context(_inputs(tmp_path, members=[member] if member else []), {})
    texts: dict = {}
    index, sizes = _render(ctx, tmp_path / "f", architecture.architecture, texts)
    return index, sizes, texts


def test_fig6_has_one_box_per_layer_with_its_output_shape(tmp_path):
    member, net = _member(tmp_path, 200, 4, 8)
    index, sizes, texts = _architecture(tmp_path, member)
    (entry,) = index["figures"]
    assert entry["name"] == "fig06_architecture" and entry["n_stars"] == 0
    check_image(tmp_path / "f" / "fig06_architecture.png", sizes[entry["name"]])
    drawn = [t for ax in texts["fig06_architecture"] for t in ax]
    for layer in net.layers:
        shape = str(tuple(layer.output.shape[1:]))
        box = [t for t in drawn if t.split("\n")[0] == layer.name]
        assert len(box) == 1 and shape in box[0], (layer.name, shape, box)
    for n_filters in SMALL["conv_filters"]:  # the config's filter counts, not the paper's
        assert any(f"Conv1D {n_filters}, relu" in t for t in drawn)
    assert any("Concatenate, (56,)" in t for t in drawn)  # 16 + 32 + 8
    caption = entry["caption"]
    assert "ensemble member split0_seed0" in caption
    assert f"{net.count_params():,}".replace(",", "\u2009") + " parameters" in caption
    assert "(teff, logg, m_h)" in caption and "3 input branches" in caption


def test_fig6_places_photometry_left_rvs_centre_xp_right_and_joins_them(tmp_path):
    _, net = _member(tmp_path, 200, 4, 8)
    boxes = {b.name: b for b in architecture.layout_boxes(net)}
    assert {b.column for b in boxes.values() if b.branch == "phot"} == {-1.0}
    assert {b.column for b in boxes.values() if b.branch == "rvs"} == {0.0}
    assert {b.column for b in boxes.values() if b.branch == "xp"} == {1.0}
    concat = boxes["concat"]
    assert concat.branch is None and set(concat.parents) == {
        "rvs_dense_act",
        "phot_dense_act",
        "xp_dense_act",
    }
    for p in concat.parents:  # each branch ends just above the concatenation
        assert boxes[p].row == concat.row - 1
    assert boxes["rvs"].row == 0 and boxes["labels"].row == max(b.row for b in boxes.values())
    assert boxes["phot"].row > boxes["rvs"].row


def test_fig6_of_an_rvs_only_member_has_no_photometry_or_xp_boxes(tmp_path):
    member, net = _member(tmp_path, 200, None, None)
    index, _, texts = _architecture(tmp_path, member)
    drawn = [t for ax in texts["fig06_architecture"] for t in ax]
    assert len([t for t in drawn if "\n" in t]) == len(net.layers) + 1  # + the outputs
    assert not any(t.startswith(("phot", "xp")) or "photometry" in t for t in drawn)
    assert not any("Concatenate" in t for t in drawn)
    boxes = architecture.layout_boxes(net)
    assert {b.branch for b in boxes} == {"rvs"} and {b.column for b in boxes} == {0.0}
    assert "One input, RVS spectrum (200, 1)" in index["figures"][0]["caption"]


@pytest.mark.parametrize("member", [None, "empty"])
def test_fig6_skips_without_a_trained_member(tmp_path, member):
    path = None
    if member == "empty":
        path = tmp_path / "split0_seed0"
        path.mkdir()
    index, _, _ = _architecture(tmp_path, path)
    assert index["figures"] == []
    reason = index["skipped"][0]["reason"]
    assert ("no ensemble member" if path is None else "lacks model.keras") in reason


def test_figs_2_and_6_are_registered_in_the_papers_order():
    order = {fn.__name__: fn.order for fn in registry()}
    assert order["example_spectra"] == 2 and order["architecture"] == 6
    names = [fn.__name__ for fn in registry()]
    assert names.index("example_spectra") < names.index("architecture")
    assert names.index("architecture") < names.index("rvs_gradients")
