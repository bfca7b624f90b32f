"""The HDF5 interchange layout: a good file passes, each kind of broken file is refused
with a message naming the dataset, and the writer never leaves a half-file."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from gaiacnn.constants import rvs_wavelength_nm
from gaiacnn.layout import ArraysWriter, LayoutError, iter_rows, validate

N = 12


def write_good(path, *, rvs=True, xp=True, phot=True, labels=True, n_pix=2401):
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as h5:
        h5.attrs["schema_version"] = "1.0"
        h5["source_id"] = np.arange(N, dtype=np.int64) + 10
        if rvs:
            ds = h5.create_dataset("rvs/flux", data=rng.uniform(0.5, 1, (N, n_pix)).astype("f4"))
            ds.attrs["wavelength_nm"] = np.linspace(846, 870, n_pix)
            h5["rvs/snr"] = np.full(N, 40, "f4")
        if xp:
            h5["xp/bp_coefficients"] = rng.normal(size=(N, 55)).astype("f4")
            h5["xp/rp_coefficients"] = rng.normal(size=(N, 55)).astype("f4")
        if phot:
            for band in ("g", "bp", "rp"):
                h5[f"phot/{band}"] = np.full(N, 11, "f4")
            h5["astrometry/parallax"] = np.full(N, 1.0, "f4")
        if labels:
            h5["labels/teff"] = np.full(N, 4800, "f4")
            h5["labels/teff_err"] = np.full(N, 50, "f4")
            h5["labels/ti_fe"] = np.full(N, 0.1, "f4")
    return path


def test_good_file_reports_its_branches_and_labels(tmp_path):
    info = validate(
        write_good(tmp_path / "g.h5"), require_labels=["teff", "ti_fe"], require_finite_inputs=True
    )
    assert info.n_rows == N and info.n_pixels == 2401 and info.xp_length == 55
    assert info.branches == ("rvs", "phot", "xp")
    assert info.labels == ("teff", "ti_fe")
    with h5py.File(tmp_path / "g.h5", "a") as h5:  # the optional position, both halves
        h5["astrometry/ra"] = np.linspace(0, 359, N).astype("f4")
        h5["astrometry/dec"] = np.linspace(-89, 89, N).astype("f4")
    assert validate(tmp_path / "g.h5").n_rows == N


def test_partial_files_offer_fewer_branches(tmp_path):
    assert validate(write_good(tmp_path / "a.h5", xp=False, phot=False)).branches == ("rvs",)
    info = validate(write_good(tmp_path / "b.h5", rvs=False, n_pix=10))
    assert info.branches == ("phot", "xp") and info.n_pixels is None
    other_grid = validate(write_good(tmp_path / "c.h5", n_pix=300))
    assert other_grid.n_pixels == 300


def _break(path, action):
    with h5py.File(path, "a") as h5:
        action(h5)


BROKEN = {
    "missing source_id": (lambda h5: h5.__delitem__("source_id"), "source_id", "missing"),
    "float source_id": (
        lambda h5: (
            h5.__delitem__("source_id"),
            h5.create_dataset("source_id", data=np.arange(N) * 1.0),
        ),
        "source_id",
        "not an integer",
    ),
    "ra without dec": (
        lambda h5: h5.create_dataset("astrometry/ra", data=np.ones(N, "f4")),
        "astrometry/dec",
        "missing while astrometry/ra is present",
    ),
    "position rows": (
        lambda h5: (
            h5.create_dataset("astrometry/ra", data=np.ones(N, "f4")),
            h5.create_dataset("astrometry/dec", data=np.ones(N - 1, "f4")),
        ),
        "astrometry/dec",
        "rows",
    ),
    "duplicate ids": (lambda h5: h5["source_id"].__setitem__(3, 10), "source_id", "duplicated"),
    "row mismatch": (
        lambda h5: (h5.__delitem__("phot/g"), h5.create_dataset("phot/g", data=np.ones(N - 1))),
        "phot/g",
        "rows",
    ),
    "integer magnitudes": (
        lambda h5: (h5.__delitem__("phot/bp"), h5.create_dataset("phot/bp", data=np.ones(N, int))),
        "phot/bp",
        "not floating point",
    ),
    "no wavelength": (
        lambda h5: h5["rvs/flux"].attrs.__delitem__("wavelength_nm"),
        "rvs/flux",
        "wavelength_nm is missing",
    ),
    "short wavelength": (
        lambda h5: h5["rvs/flux"].attrs.__setitem__("wavelength_nm", np.arange(5.0)),
        "rvs/flux",
        "5 values for 2401 pixels",
    ),
    "unsorted wavelength": (
        lambda h5: h5["rvs/flux"].attrs.__setitem__("wavelength_nm", np.linspace(870, 846, 2401)),
        "rvs/flux",
        "not strictly increasing",
    ),
    "BP without RP": (
        lambda h5: h5.__delitem__("xp/rp_coefficients"),
        "xp/rp_coefficients",
        "missing while xp/bp_coefficients",
    ),
    "XP lengths differ": (
        lambda h5: (
            h5.__delitem__("xp/rp_coefficients"),
            h5.create_dataset("xp/rp_coefficients", data=np.ones((N, 40))),
        ),
        "xp/rp_coefficients",
        "40 coefficients",
    ),
    "error without label": (
        lambda h5: h5.__delitem__("labels/teff"),
        "labels/teff_err",
        "no matching labels/teff",
    ),
    "flux as 1-D": (
        lambda h5: (h5.__delitem__("rvs/flux"), h5.create_dataset("rvs/flux", data=np.ones(N))),
        "rvs/flux",
        "expected 2 axes",
    ),
    "no schema version": (
        lambda h5: h5.attrs.__delitem__("schema_version"),
        None,
        "schema_version is missing",
    ),
    "future schema version": (
        lambda h5: h5.attrs.__setitem__("schema_version", "2.0"),
        None,
        "not supported",
    ),
    "only two bands": (lambda h5: h5.__delitem__("phot/rp"), "phot/rp", "bands"),
}


@pytest.mark.parametrize("kind", sorted(BROKEN))
def test_broken_file_is_refused_naming_dataset(tmp_path, kind):
    action, dataset, problem = BROKEN[kind]
    path = write_good(tmp_path / "x.h5")
    _break(path, action)
    with pytest.raises(LayoutError) as err:
        validate(path)
    assert err.value.dataset == dataset
    assert problem in str(err.value)
    assert str(path) in str(err.value)


def test_not_hdf5_and_truncated_files_are_refused(tmp_path):
    text = tmp_path / "t.h5"
    text.write_text("source_id,flux\n1,2\n")
    with pytest.raises(LayoutError, match="not a readable HDF5 file"):
        validate(text)
    good = write_good(tmp_path / "g.h5")
    data = good.read_bytes()
    truncated = tmp_path / "trunc.h5"
    truncated.write_bytes(data[: len(data) // 3])
    with pytest.raises(LayoutError, match=r"not a readable HDF5|rows|missing|truncated"):
        validate(truncated)
    with pytest.raises(LayoutError, match="does not exist"):
        validate(tmp_path / "nope.h5")


def test_finite_inputs_and_parallax_checks(tmp_path):
    path = write_good(tmp_path / "n.h5")
    _break(path, lambda h5: h5["rvs/flux"].__setitem__((7, 3), np.nan))
    validate(path)  # a NaN pixel is allowed in a file that is still to be filled
    with pytest.raises(LayoutError, match=r"rvs/flux: non-finite values in 1 rows.*source_id 17"):
        validate(path, require_finite_inputs=True)
    path2 = write_good(tmp_path / "p.h5")
    _break(path2, lambda h5: h5["astrometry/parallax"].__setitem__(2, -0.3))
    with pytest.raises(LayoutError, match="astrometry/parallax: parallax <= 0 at row 2"):
        validate(path2, require_finite_inputs=True)


def test_per_star_cuts_are_counted_or_refused(tmp_path):
    """validate counts the rows the import will cut (the paper's per-star cuts), or, with
    cuts="refuse", refuses the file naming the first such row."""
    path = write_good(tmp_path / "c.h5")
    _break(path, lambda h5: h5["rvs/flux"].__setitem__(5, np.full(2401, np.nan)))
    _break(path, lambda h5: h5["astrometry/parallax"].__setitem__([2, 5, 8], [-0.3, -1.0, 0.0]))
    _break(path, lambda h5: h5["phot/bp"].__setitem__(9, np.nan))
    counts = {cut: n for cut, _, n in validate(path).cuts}
    # row 5 is cut once, by the first cut it fails
    assert counts["rvs_finite_pixel"] == 1 and counts["parallax_positive"] == 2
    assert counts["photometry_finite"] == 1
    assert "ruwe" not in counts  # the training cuts apply to the training file only
    # refused at the first row that fails a cut
    with pytest.raises(LayoutError, match="astrometry/parallax: parallax <= 0 at row 2"):
        validate(path, cuts="refuse")
    _break(path, lambda h5: h5["astrometry/parallax"].__setitem__([2, 5, 8], 1.0))
    with pytest.raises(LayoutError, match=r"rvs/flux: row 5 \(source_id 15\) has no finite pixel"):
        validate(path, cuts="refuse")


def test_bad_label_values_are_refused_with_count_and_id(tmp_path):
    path = write_good(tmp_path / "inf.h5")
    _break(path, lambda h5: h5["labels/teff"].__setitem__([3, 4], np.inf))
    with pytest.raises(LayoutError, match=r"labels/teff: 2 rows with values that are \+-inf.*13"):
        validate(path)
    path = write_good(tmp_path / "err.h5")
    _break(path, lambda h5: h5["labels/teff_err"].__setitem__(6, 0.0))
    with pytest.raises(LayoutError, match=r"labels/teff_err: 1 rows with errors that are <= 0"):
        validate(path)
    _break(path, lambda h5: h5["labels/teff_err"].__setitem__(6, np.nan))
    validate(path)  # NaN = unknown


def test_label_requirements(tmp_path):
    path = write_good(tmp_path / "l.h5")
    with pytest.raises(
        LayoutError, match=r"labels/logg: label not in file \(it has: \['teff', 'ti_fe'\]\)"
    ):
        validate(path, require_labels=["teff", "logg"])
    with pytest.raises(LayoutError, match="must not carry labels"):
        validate(path, forbid_labels=True)
    with pytest.raises(LayoutError, match="holds no labels"):
        validate(write_good(tmp_path / "u.h5", labels=False), require_labels=True)


def _columns():
    wl = rvs_wavelength_nm()
    return {
        "source_id": ((), np.int64, {}),
        "rvs/flux": ((wl.size,), np.float32, {"wavelength_nm": wl}),
    }


def test_writer_streams_chunks_and_roundtrips(tmp_path):
    out = tmp_path / "w.h5"
    with ArraysWriter(out, 10, _columns(), attrs={"sample": "training"}, chunk_rows=4) as w:
        for start in (0, 4, 8):
            m = min(4, 10 - start)
            w.append(
                {
                    "source_id": np.arange(start, start + m),
                    "rvs/flux": np.full((m, 2401), start, np.float32),
                }
            )
    info = validate(out)
    assert info.n_rows == 10 and info.attrs["sample"] == "training"
    starts = [(s, b["rvs/flux"][0, 0]) for s, b in iter_rows(out, ["rvs/flux"], chunk_rows=4)]
    assert starts == [(0, 0.0), (4, 4.0), (8, 8.0)]


def test_writer_leaves_nothing_when_killed_or_short(tmp_path):
    out = tmp_path / "w.h5"
    with pytest.raises(RuntimeError), ArraysWriter(out, 10, _columns()) as w:
        w.append({"source_id": np.arange(4), "rvs/flux": np.ones((4, 2401), np.float32)})
        raise RuntimeError("killed")
    with (
        pytest.raises(ValueError, match="wrote 4 of 10 rows"),
        ArraysWriter(out, 10, _columns()) as w,
    ):
        w.append({"source_id": np.arange(4), "rvs/flux": np.ones((4, 2401), np.float32)})
    assert list(tmp_path.iterdir()) == []


def test_summary_lists_every_dataset_used_or_ignored(tmp_path, capsys):
    """Nothing is ignored in silence: every dataset of the file is listed, used by which
    branch or stage, or ignored and why."""
    from gaiacnn import cli
    from gaiacnn.layout import dataset_usage

    path = write_good(tmp_path / "s.h5")
    with h5py.File(path, "a") as h5:
        ds = h5.create_dataset("xp/sampled_flux", data=np.ones((N, 7), "f4"))
        ds.attrs["wavelength_nm"] = np.linspace(400, 1000, 7)
        ds.attrs["flux_kind"] = "absolute"
        h5["extra/my_column"] = np.ones(N)
    usage = dict(dataset_usage(path, sample="training", tsne_spectra="rvs/flux"))
    with h5py.File(path) as h5:
        names = []
        h5.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
    assert set(usage) == set(names)
    assert usage["rvs/flux"] == "used: rvs branch; t-SNE classification"
    assert usage["xp/bp_coefficients"] == "used: xp branch"
    assert usage["xp/sampled_flux"] == "ignored: model.xp_input uses the coefficients"
    assert usage["astrometry/parallax"] == "used: phot branch; flag digit parallax"
    assert usage["extra/my_column"] == "ignored: not part of the layout (unknown dataset)"
    assert usage["labels/ti_fe"] == "used: training label"
    sampled = dict(dataset_usage(path, sample="observed", xp_input="sampled", labels=["teff"]))
    assert sampled["xp/sampled_flux"] == "used: xp branch"
    assert sampled["xp/bp_coefficients"] == "ignored: model.xp_input uses the sampled"
    assert sampled["labels/ti_fe"] == "ignored: label 'ti_fe' is not in model.labels"
    rvs_only = dict(dataset_usage(path, sample="observed", branches=["rvs"]))
    assert rvs_only["phot/bp"] == "ignored: model.branches leaves out the phot branch"
    assert rvs_only["xp/bp_coefficients"] == "ignored: model.branches leaves out the xp branch"
    assert cli.main(["summary", str(path)]) == 0
    out = capsys.readouterr().out
    assert "xp/sampled_flux" in out and "ignored: model.xp_input uses the coefficients" in out


def test_sampled_flux_needs_its_grid_and_kind(tmp_path):
    path = write_good(tmp_path / "k.h5", xp=False)
    with h5py.File(path, "a") as h5:
        ds = h5.create_dataset("xp/sampled_flux", data=np.ones((N, 7), "f4"))
        ds.attrs["wavelength_nm"] = np.linspace(400, 1000, 7)
    with pytest.raises(LayoutError, match="xp/sampled_flux: attribute flux_kind is None"):
        validate(path)
    with h5py.File(path, "a") as h5:
        h5["xp/sampled_flux"].attrs["flux_kind"] = "normalised"
    info = validate(path)
    assert info.branches == ("rvs", "phot", "xp") and info.xp_inputs == ("sampled",)
    assert (info.xp_sampled_length, info.xp_flux_kind) == (7, "normalised")
    with h5py.File(path, "a") as h5:
        h5["xp/sampled_flux"].attrs["wavelength_nm"] = np.linspace(400, 1000, 6)
    with pytest.raises(LayoutError, match="wavelength_nm has 6 values for 7 samples"):
        validate(path)


def test_xp_coefficient_errors_are_optional_paired_and_checked(tmp_path):
    """``xp/*_coefficient_errors`` [e-/s]: both or neither, with the coefficients and their
    shape; NaN (unknown) passes, a negative or infinite error is refused naming the star."""
    path = write_good(tmp_path / "e.h5")
    with h5py.File(path, "a") as h5:
        h5["xp/bp_coefficient_errors"] = np.full((N, 55), 0.1, "f4")
    with pytest.raises(LayoutError, match="xp/rp_coefficient_errors: missing while"):
        validate(path)
    with h5py.File(path, "a") as h5:
        h5["xp/rp_coefficient_errors"] = np.full((N, 54), 0.1, "f4")
    with pytest.raises(LayoutError, match=r"xp/rp_coefficient_errors: shape \(12, 54\) differs"):
        validate(path)
    with h5py.File(path, "a") as h5:
        del h5["xp/rp_coefficient_errors"]
        err = np.full((N, 55), 0.1, "f4")
        err[3, :] = np.nan  # unknown: fine
        h5["xp/rp_coefficient_errors"] = err
    assert validate(path, require_finite_inputs=True).xp_length == 55
    with h5py.File(path, "a") as h5:
        h5["xp/rp_coefficient_errors"][5, 7] = -0.1
    with pytest.raises(LayoutError, match=r"rp_coefficient_errors: 1 rows .* e-/s .* 15"):
        validate(path)
    no_xp = write_good(tmp_path / "n.h5", xp=False)
    with h5py.File(no_xp, "a") as h5:
        for band in ("bp", "rp"):
            h5[f"xp/{band}_coefficient_errors"] = np.full((N, 55), 0.1, "f4")
    with pytest.raises(LayoutError, match="xp/bp_coefficients: missing while"):
        validate(no_xp)
