"""Loading a member, its input contract and streamed prediction."""

from __future__ import annotations

import dataclasses
import json
import os
import queue
import threading
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

import h5py
import numpy as np

from gaiacnn import spectra
from gaiacnn.ensemble import NOISE_SOURCES, WITHHELD_GROUP, noise_group
from gaiacnn.io import atomic_output
from gaiacnn.layout import (
    PARALLAX_ERROR_DATASET,
    PHOT_DATASETS,
    XP_COEFFICIENT_DATASETS,
    XP_ERROR_DATASETS,
    XP_SAMPLED_DATASET,
    LayoutError,
    LayoutInfo,
    iter_rows,
    validate,
    xp_datasets,
)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import tensorflow as tf

from gaiacnn.model.scalers import Scalers, _check_finite, _require
from gaiacnn.model.settings import (
    GRID_TOLERANCE_NM,
    MODEL_FILE,
    PARALLAX_DATASET,
    PRECISIONS,
    RVS_DATASET,
    SCALERS_FILE,
    MemberError,
)

# --------------------------------------------------------------------------- prediction

T = TypeVar("T")


def load_member(member_dir: str | os.PathLike) -> tuple[keras.Model, Scalers]:
    """The trained model and its scalers from a member directory.  The model is loaded in
    Keras's safe mode, which refuses an archive whose layers carry Python code (a ``Lambda``
    layer's function) or name anything outside Keras; a file that is not a member's is
    refused as :class:`~gaiacnn.io.UnreadableResult` (a ``ValueError``) naming it."""
    import zipfile

    from gaiacnn.io import UnreadableResult

    d = Path(member_dir)
    missing = [f for f in (MODEL_FILE, SCALERS_FILE) if not (d / f).is_file()]
    if missing:
        raise MemberError(f"{d}: member directory lacks {', '.join(missing)} (was it trained?)")
    try:
        scalers = Scalers.from_json((d / SCALERS_FILE).read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
        raise UnreadableResult(f"{d / SCALERS_FILE}: not a member's scalers ({exc})") from exc
    try:
        model = keras.models.load_model(d / MODEL_FILE, compile=False, safe_mode=True)
    except (ValueError, TypeError, KeyError, OSError, zipfile.BadZipFile) as exc:
        raise UnreadableResult(f"{d / MODEL_FILE}: not a member's Keras model ({exc})") from exc
    return model, scalers


def describe_grid(wl: np.ndarray | None) -> str:
    """A wavelength grid in words: "846.00-870.00 nm, 2401 samples (step 0.01 nm)"."""
    if wl is None:
        return "no grid"
    wl = np.asarray(wl, dtype=float)
    if wl.size < 2:
        return f"{wl.size} sample(s)"
    return f"{wl[0]:.2f}-{wl[-1]:.2f} nm, {wl.size} samples (step {np.median(np.diff(wl)):.4g} nm)"


def same_grid(a: np.ndarray | None, b: np.ndarray | None) -> bool:
    """Two wavelength grids agree sample for sample within :data:`GRID_TOLERANCE_NM`."""
    if a is None or b is None:
        return a is None and b is None
    a, b = np.asarray(a, float), np.asarray(b, float)
    return a.shape == b.shape and bool(np.all(np.abs(a - b) <= GRID_TOLERANCE_NM))


def _regridder(src: np.ndarray, dst: np.ndarray):
    """Linear interpolation of (n, len(src)) spectra onto ``dst`` (inside ``src``)."""

    def fn(values: np.ndarray) -> np.ndarray:
        v = np.asarray(values, dtype=np.float64)
        out = np.empty((v.shape[0], dst.size), dtype=np.float32)
        for i in range(v.shape[0]):
            out[i] = np.interp(dst, src, v[i])
        return out

    return fn


def check_contract(scalers: Scalers, info: LayoutInfo, *, resample: bool = False) -> dict:
    """Refuse a file that breaks the member's input contract (one line naming both sides):
    a branch whose data it lacks, parallax missing, another XP form or coefficient count,
    another RVS or XP-sampled wavelength grid (``resample``: accepted when it covers the
    member's grid, and interpolated onto it), another flux kind.  Returns ``{dataset:
    function}`` of the datasets to resample (empty when the grids agree)."""
    path = info.path
    need = {"rvs": RVS_DATASET, "phot": PHOT_DATASETS[0], "xp": xp_datasets(scalers.xp_input)[0]}
    for b in scalers.branches:
        if b not in info.branches:
            raise LayoutError(
                path,
                need[b],
                f"the model needs branch {b!r}, whose data the file lacks "
                f"(it can feed: {', '.join(info.branches) or 'no branch'})",
            )
    if "phot" in scalers.branches and PARALLAX_DATASET in scalers.phot_columns:
        if not info.has_parallax:
            raise LayoutError(path, PARALLAX_DATASET, "the model needs parallax")
        _require(path, scalers.phot_columns)
    regrid: dict = {}
    grids = []
    if "rvs" in scalers.branches:
        grids.append((RVS_DATASET, scalers.rvs_wavelength_nm))
    if "xp" in scalers.branches:
        if scalers.xp_input not in info.xp_inputs:
            raise LayoutError(
                path,
                need["xp"],
                f"the model's XP input is the {scalers.xp_input}, which the file lacks "
                f"(it has: {', '.join(info.xp_inputs)})",
            )
        if scalers.xp_input == "coefficients" and info.xp_length != scalers.xp_length:
            raise LayoutError(
                path,
                XP_COEFFICIENT_DATASETS[0],
                f"{info.xp_length} coefficients per band, the model was trained on "
                f"{scalers.xp_length}",
            )
        if scalers.xp_input == "sampled":
            if info.xp_flux_kind != scalers.xp_flux_kind:
                raise LayoutError(
                    path,
                    XP_SAMPLED_DATASET,
                    f"flux_kind {info.xp_flux_kind!r}, the model was trained on "
                    f"{scalers.xp_flux_kind!r} flux",
                )
            grids.append((XP_SAMPLED_DATASET, scalers.xp_wavelength_nm))
    for name, model_wl in grids:
        with h5py.File(path, "r") as h5:
            file_wl = np.asarray(h5[name].attrs["wavelength_nm"], dtype=float)
        if same_grid(file_wl, model_wl):
            continue
        covers = file_wl[0] <= model_wl[0] + GRID_TOLERANCE_NM and (
            file_wl[-1] >= model_wl[-1] - GRID_TOLERANCE_NM
        )
        if resample and covers:
            regrid[name] = _regridder(file_wl, np.asarray(model_wl, float))
            continue
        hint = (
            "; prediction.resample: true interpolates it onto the model's grid"
            if covers
            else "; it does not cover the model's grid, so it cannot be resampled"
        )
        raise LayoutError(
            path,
            name,
            f"wavelength grid {describe_grid(file_wl)} differs from the grid the model was "
            f"trained on, {describe_grid(model_wl)}{hint}",
        )
    return regrid


#: Layers a "mixed_bfloat16" compute copy runs in bfloat16: the second convolution (about
#: 80 % of the network's multiply-adds) and the pooling after it.  Measured on the benchmark
#: (benchmarks/model_speed.py, AVX512_BF16 CPU): bfloat16 for every hidden layer was ~1.55x
#: faster than float32 but moved T_eff by up to 0.06 sigma (bfloat16 keeps 8 bits: a flux near
#: 1 or a ReLU activation is rounded to ~0.4 %); these two alone: ~1.35x, <= 0.025 sigma.
BFLOAT16_LAYERS: tuple[str, ...] = ("rvs_conv2", "rvs_pool1")


def compute_copy(model: keras.Model, precision: str = "float32") -> keras.Model:
    """``model`` itself for "float32"; for "mixed_bfloat16" a copy with the same (float32)
    weights whose layers :data:`BFLOAT16_LAYERS` compute in bfloat16 (Keras mixed precision
    policy, weights cast on the fly); every other layer, the output included, stays float32.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r} (known: {', '.join(PRECISIONS)})")
    if precision == "float32":
        return model

    def clone(layer):
        config = layer.get_config()
        if layer.name in BFLOAT16_LAYERS:
            config["dtype"] = keras.DTypePolicy(precision)
        return layer.__class__.from_config(config)

    copy = keras.models.clone_model(model, clone_function=clone)
    copy.set_weights(model.get_weights())
    return copy


def make_predictor(model: keras.Model, batch_size: int, *, precision: str = "float32"):
    """A function ``inputs dict -> (n, n_labels) float32`` running ``model`` in fixed batches.

    One ``tf.function`` traced once for a fixed ``(batch_size, ...)`` signature; the last
    partial batch is zero-padded, so no retracing happens whatever n is.  ``precision``
    "mixed_bfloat16" runs a bfloat16 compute copy of the weights (:func:`compute_copy`);
    inputs and outputs stay float32.
    """
    model = compute_copy(model, precision)
    names = [t.name for t in model.inputs]
    spec = {
        n: tf.TensorSpec((batch_size, *t.shape[1:]), tf.float32)
        for n, t in zip(names, model.inputs, strict=True)
    }

    @tf.function(input_signature=[spec], reduce_retracing=False)
    def step(x):
        return tf.cast(model(x, training=False), tf.float32)

    def predict(x: Mapping[str, np.ndarray]) -> np.ndarray:
        n = len(next(iter(x.values())))
        out = np.empty((n, model.outputs[0].shape[-1]), dtype=np.float32)
        for s in range(0, n, batch_size):
            e = min(s + batch_size, n)
            batch = {}
            for k in names:
                v = np.asarray(x[k][s:e], dtype=np.float32)
                if e - s < batch_size:
                    pad = np.zeros((batch_size - (e - s), *v.shape[1:]), dtype=np.float32)
                    v = np.concatenate([v, pad])
                batch[k] = v
            out[s:e] = step(batch).numpy()[: e - s]
        return out

    return predict


def split_model(model: keras.Model) -> tuple[keras.Model, keras.Model] | None:
    """(trunk, head) of a hybrid model with an RVS branch: the trunk maps the RVS input to
    that branch's features where the branches meet (layer ``concat``), the head maps those
    features and the other inputs to the labels, with the model's own layers and weights
    (head(trunk(x)) is model(x), bit for bit).  The input noise is drawn through the head
    alone, the RVS convolutions (most of the network's work) run once per star.  None for a
    model without an RVS branch or without other branches."""
    names = [t.name for t in model.inputs]
    if "rvs" not in names or len(names) < 2:
        return None
    concat = model.get_layer("concat")
    features = concat.input[0]  # the RVS branch comes first (architecture.build_model)
    trunk = keras.Model(inputs=[model.get_layer("rvs").output], outputs=features)
    others = [model.get_layer(n).output for n in names if n != "rvs"]
    head = keras.Model(inputs=[features, *others], outputs=model.output)
    return trunk, head


def member_noise_sources(
    scalers: Scalers, info: LayoutInfo, requested: Sequence[str]
) -> tuple[list[str], list[str]]:
    """(the sources of ``requested`` (:data:`gaiacnn.ensemble.NOISE_SOURCES`) a member
    can draw from this file, those it cannot, with the reason): "parallax" needs the
    photometry branch with the parallax among its inputs; "xp" the XP branch on
    coefficients and the file's ``xp/*_coefficient_errors``."""
    unknown = sorted(set(requested) - set(NOISE_SOURCES))
    if unknown:
        raise ValueError(f"unknown input noise {unknown} (known: {', '.join(NOISE_SOURCES)})")
    usable, skipped = [], []
    for source in requested:
        if source == "parallax":
            ok = "phot" in scalers.branches and PARALLAX_DATASET in scalers.phot_columns
            why = "the member has no parallax input"
        else:
            ok = "xp" in scalers.branches and scalers.xp_input == "coefficients"
            why = "the member has no XP coefficient input"
            if ok and not info.has_xp_errors:
                ok, why = False, f"the file lacks {', '.join(XP_ERROR_DATASETS)}"
        (usable if ok else skipped).append(source if ok else f"{source} ({why})")
    return usable, skipped


def _mix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser on uint64 values (wrapping arithmetic): a bijection whose
    output bits each depend on every input bit."""
    x = np.asarray(x, np.uint64)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def star_normals(key: int, source_id: np.ndarray, draw: int, stream: int, width: int) -> np.ndarray:
    """(n, ``width``) standard normal values fixed by (``key``, each star's ``source_id``,
    ``draw``, ``stream``) alone: a star gets the same noise whatever chunk, shard or run
    predicts it (counter-based: SplitMix64 of the counter, then Box-Muller)."""
    with np.errstate(over="ignore"):
        star = _mix64(np.asarray(source_id).astype(np.uint64) ^ _mix64(np.uint64(key)))
        base = _mix64(star + _mix64(np.uint64((draw << 8) + stream)))
        col = np.arange(2 * width, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
        bits = _mix64(base[:, None] + col[None, :]) >> np.uint64(11)
    u = (bits.astype(np.float64) + 0.5) / float(1 << 53)  # in (0, 1)
    u1, u2 = u[:, :width], u[:, width:]
    return np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)


def drawn_sources(sources: Sequence[str], parallax_withheld: bool = False) -> list[str]:
    """The ``sources`` that reach the network: none of the parallax's where every parallax
    is withheld (the withheld predictions)."""
    return [s for s in sources if not (s == "parallax" and parallax_withheld)]


def input_drawer(
    scalers: Scalers,
    block: Mapping[str, np.ndarray],
    inputs: Mapping[str, np.ndarray],
    sources: Sequence[str],
    key: int,
    parallax_withheld: bool = False,
) -> Callable[[int], dict[str, np.ndarray]]:
    """``draw(k)``: draw k of a chunk's scaled inputs ``inputs`` with each star's own
    measurement noise (Gaussian, its 1 sigma errors in ``block``) added to the ``sources``:
    the parallax [mas] and the XP coefficients [e-/s] (an error that is not finite counts
    as 0), the normal deviates fixed by ``key``, the star's source_id and k
    (:func:`star_normals`).  The RVS input is left as it is.  A star whose parallax the
    member withholds (``phot_input: intrinsic_withheld``; all of them with
    ``parallax_withheld``, the withheld predictions) keeps its withheld input: no parallax
    reaches the network, so none is drawn; the others keep their parallax used in every
    draw, even where a draw would fall below the withholding S/N.  What does not change
    between draws (errors, which stars are withheld) is worked out once per chunk."""
    sid = block["source_id"]
    sources = drawn_sources(sources, parallax_withheld)
    parallax = None
    if "parallax" in sources:
        plx = np.asarray(block[PARALLAX_DATASET], np.float64)
        err = np.asarray(block[PARALLAX_ERROR_DATASET], np.float64)
        err = np.where(np.isfinite(err), err, 0.0)
        if scalers.parallax_withheld_snr is None:
            used, scale = None, scalers
        else:
            used = ~spectra.parallax_withheld(block, scalers.parallax_withheld_snr)
            scale = dataclasses.replace(scalers, parallax_withheld_snr=-np.inf)
        parallax = (plx, err, used, scale)
    xp = []
    if "xp" in sources:
        for band, (name, err_name) in enumerate(
            zip(XP_COEFFICIENT_DATASETS, XP_ERROR_DATASETS, strict=True), start=1
        ):
            err = np.asarray(block[err_name], np.float64)
            xp.append((band, name, np.asarray(block[name], np.float64),
                       np.where(np.isfinite(err), err, 0.0)))  # fmt: skip

    def draw(k: int) -> dict[str, np.ndarray]:
        out = dict(inputs)
        if parallax is not None:
            plx, err, used, scale = parallax
            z = star_normals(key, sid, k, 0, 1)[:, 0]
            drawn = scale.inputs({**block, PARALLAX_DATASET: plx + err * z}, ["phot"])["phot"]
            out["phot"] = drawn if used is None else np.where(used[:, None], drawn, inputs["phot"])
        if xp:
            noisy = dict(block)
            for band, name, c, err in xp:
                noisy[name] = c + err * star_normals(key, sid, k, band, c.shape[1])
            out["xp"] = scalers.inputs(noisy, ["xp"])["xp"]
        return out

    return draw


class NoisePredictor:
    """A member's labels, and their spread under each star's own input noise
    (:func:`input_drawer`, ``draws`` draws): the RVS trunk runs once per star, the head once
    per draw (:func:`split_model`; the whole model per draw where it cannot be split).
    ``model`` is the compute copy (:func:`compute_copy`) it runs as it is."""

    def __init__(self, model: keras.Model, batch_size: int, draws: int):
        if draws < 2:
            raise ValueError(f"input noise needs at least 2 draws, not {draws}")
        self.draws = int(draws)
        parts = split_model(model)
        if parts is None:
            self.trunk, self.feature_name = None, None
            self.head = make_predictor(model, batch_size)
        else:
            trunk, head = parts
            self.trunk = make_predictor(trunk, batch_size)
            self.feature_name = head.inputs[0].name
            self.head = make_predictor(head, batch_size)

    def features(self, x: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The RVS features of ``x`` the head reads (none for a model that was not split)."""
        if self.trunk is None:
            return {}
        return {self.feature_name: self.trunk({"rvs": x["rvs"]})}

    def labels(self, x: Mapping[str, np.ndarray], features: Mapping[str, np.ndarray]) -> np.ndarray:
        """The labels of ``x`` (n, n_labels), scaled as the network outputs them, with the
        RVS ``features`` of :meth:`features`."""
        if self.trunk is None:
            return self.head(x)
        return self.head({**{k: v for k, v in x.items() if k != "rvs"}, **features})

    def __call__(
        self,
        x: Mapping[str, np.ndarray],
        features: Mapping[str, np.ndarray],
        draw: Callable[[int], Mapping[str, np.ndarray]] | None,
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """(labels of ``x`` (n, n_labels), those of each draw (draws, n, n_labels)), both
        scaled as the network outputs them; ``draw(k)`` returns draw k of the inputs (None:
        nothing to draw, no draws run)."""
        y = self.labels(x, features)
        if draw is None:
            return y, None
        return y, np.stack([self.labels(draw(k), features) for k in range(self.draws)])


def prefetch(items: Iterator[T], depth: int = 2) -> Iterator[T]:
    """``items`` produced by a background thread, up to ``depth`` ahead of the consumer, so
    that reading and preparing the next chunk overlaps with the work on this one (HDF5
    reads, numpy and TensorFlow release the GIL for most of their time).  An exception in
    the producer is raised in the consumer; a consumer that stops early (an error, a
    ``break``) stops the producer too."""
    q: queue.Queue = queue.Queue(maxsize=max(1, int(depth)))
    stop = threading.Event()
    done = object()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put((None, item)):
                    return
        except BaseException as exc:  # handed to the consumer
            put((exc, None))
            return
        put((None, done))

    thread = threading.Thread(target=produce, name="prefetch", daemon=True)
    thread.start()
    try:
        while True:
            exc, item = q.get()
            if exc is not None:
                raise exc
            if item is done:
                return
            yield item
    finally:
        stop.set()
        thread.join()


def _member_inputs(
    scalers: Scalers,
    regrid: Mapping,
    block: Mapping[str, np.ndarray],
    groups: list[str],
    arrays_file,
    check: bool = True,
) -> dict[str, dict[str, np.ndarray]]:
    """{group: the member's scaled inputs} of one chunk: ``block`` put on the member's
    grids, checked (every value the member reads finite; ``check`` False: an earlier
    member read the same values and checked them), scaled; the withheld group with every
    parallax withheld (only the photometry input differs)."""
    names = scalers.datasets()
    b = {name: block[name] for name in names}
    for name, fn in regrid.items():
        b[name] = fn(b[name])
    if check:
        _check_finite(arrays_file, b, names, block["source_id"], scalers.xp_flux_kind)
    x = scalers.inputs(b)
    out = {"pred": x}
    if WITHHELD_GROUP in groups:
        # NaN parallax: the intrinsic_withheld input marks it withheld (a member without the
        # photometry branch predicts the same labels again)
        inputs = x
        if "phot" in x:
            nan = {**b, PARALLAX_DATASET: np.full(len(block["source_id"]), np.nan)}
            inputs = {**x, "phot": scalers.inputs(nan, ["phot"])["phot"]}
        out[WITHHELD_GROUP] = inputs
    return out


def predict_file(
    member_dir: str | os.PathLike,
    arrays_file: str | os.PathLike,
    out_path: str | os.PathLike,
    **kwargs,
) -> None:
    """Predict the labels of the stars of ``arrays_file`` with one member; write
    ``out_path``: :func:`predict_members` with one member (the same keywords)."""
    predict_members([member_dir], arrays_file, [out_path], **kwargs)


def predict_members(
    member_dirs: Sequence[str | os.PathLike],
    arrays_file: str | os.PathLike,
    out_paths: Sequence[str | os.PathLike],
    *,
    chunk_rows: int = 4096,
    batch_size: int = 2048,
    progress: bool = True,
    precision: str = "float32",
    rows: tuple[int, int] | None = None,
    resample: bool = False,
    withheld_too: bool = False,
    prefetch_chunks: int = 2,
    noise_draws: int = 0,
    noise_sources: Sequence[str] = (),
) -> None:
    """Predict the labels of the stars of ``arrays_file`` with each member of
    ``member_dirs``; write one file per member, ``out_paths`` (same order).  The file is
    read, and each chunk checked, once for all members; a background thread reads and
    scales up to ``prefetch_chunks`` chunks ahead of the network (0: none, one step after
    the other).

    The file must keep every member's input contract (:func:`check_contract`): the same
    branches, XP form, coefficient count, wavelength grids and flux kind.  ``resample``:
    spectra on another grid that covers a member's are interpolated (linearly) onto it
    instead of refused.

    Every star, or rows ``[start, stop)`` only if ``rows`` is given (one shard: the root
    attributes ``shard_start``, ``shard_stop`` and ``n_rows_total`` record it).  Streams
    ``arrays_file`` in chunks of ``chunk_rows`` (memory independent of N).  Output HDF5
    (written atomically, all or none): ``source_id`` int64 (n,) and ``pred/<label>``
    float32 (n,) in physical units; root attributes name the member and the inputs used
    (and ``parallax_withheld_snr``, the parallax S/N below which the member withholds the
    parallax, for ``phot_input: intrinsic_withheld``).  ``precision``: compute precision
    of the network (see :func:`make_predictor`); with a value other than "float32" it is
    recorded as the root attribute ``precision``.

    ``withheld_too``, for a member with ``phot_input: intrinsic_withheld``: every star is
    predicted a second time with its parallax withheld, into ``pred_withheld/<label>``
    (root attribute ``withheld_predictions``).  On the training sample these give the
    held-out residuals of the withheld regime, which the S/N calibration of the stars whose
    parallax is withheld is fitted on (:func:`gaiacnn.catalogue.build`).  Ignored for
    other members (nothing is withheld there).

    ``noise_draws`` > 0 with ``noise_sources`` (of :data:`gaiacnn.ensemble.NOISE_SOURCES`):
    every star is also predicted ``noise_draws`` times with its own measurement noise drawn
    into those inputs (:func:`input_drawer`; the RVS branch runs once, :class:`NoisePredictor`),
    and the standard deviation of those predictions is written to ``pred_noise/<label>``
    (``pred_withheld_noise`` for the withheld predictions) in physical units: how much the
    star's label moves with its parallax (and XP) noise, which the members' spread does not
    see (they all read the same noisy inputs).  Root attributes ``input_noise`` (JSON list
    of the sources drawn) and ``input_noise_draws``; a source the member or file cannot
    draw (no such input, no XP errors) is logged and listed in ``input_noise_skipped``.
    The draws are fixed by the member's name and each star's source_id
    (:func:`star_normals`): the same star gets the same spread in any chunk, shard, rerun
    or bundle prediction.  Not in the paper.
    """
    import logging
    from contextlib import ExitStack

    from tqdm.auto import tqdm

    if len(member_dirs) != len(out_paths) or not member_dirs:
        raise ValueError(
            f"{len(member_dirs)} member(s) and {len(out_paths)} output(s): one output each"
        )
    info = validate(arrays_file, check_values=False)
    # one tf.function per member is by design, not the retracing TensorFlow warns about
    _quiet_retracing_warning()
    members = []
    for d in member_dirs:
        model, scalers = load_member(d)
        regrid = check_contract(scalers, info, resample=resample)
        groups = ["pred"]
        if withheld_too and scalers.parallax_withheld_snr is not None:
            groups.append(WITHHELD_GROUP)
        sources, skipped = (
            member_noise_sources(scalers, info, noise_sources) if noise_draws > 0 else ([], [])
        )
        for why in skipped:
            logging.getLogger(__name__).warning(
                "%s: input noise of the %s not drawn", Path(d).name, why
            )
        # one compute copy per member: the input noise's predictor, or the plain one
        copy = compute_copy(model, precision)
        noise = NoisePredictor(copy, int(batch_size), int(noise_draws)) if sources else None
        predict = None if noise is not None else make_predictor(copy, int(batch_size))
        members.append((d, scalers, regrid, groups, predict, (noise, sources, skipped)))
    names = list(dict.fromkeys(n for _, sc, *_ in members for n in sc.datasets()))
    for _, _, _, _, _, (_, sources, _) in members:
        if "parallax" in sources:
            names += [PARALLAX_DATASET, PARALLAX_ERROR_DATASET]
        if "xp" in sources:
            names += [*XP_COEFFICIENT_DATASETS, *XP_ERROR_DATASETS]
    names = list(dict.fromkeys(names))
    first, last = (0, info.n_rows) if rows is None else (int(rows[0]), int(rows[1]))
    n = last - first

    # members that read the same datasets, on the file's own grids, with the same flux kind
    # check a chunk once: only the first of them does
    seen: set = set()
    check_first = []
    for _, sc, regrid, *_ in members:
        key = (tuple(sc.datasets()), sc.xp_flux_kind)
        check_first.append(bool(regrid) or key not in seen)
        if not regrid:
            seen.add(key)

    def chunks():
        for row, block in iter_rows(arrays_file, ["source_id", *names], chunk_rows, rows):
            yield (
                row,
                block,
                [
                    _member_inputs(sc, regrid, block, groups, arrays_file, check)
                    for (_, sc, regrid, groups, *_), check in zip(members, check_first, strict=True)
                ],
            )

    with ExitStack() as stack:
        outputs = []
        for (d, scalers, regrid, groups, _, noise), out_path in zip(
            members, out_paths, strict=True
        ):
            tmp = stack.enter_context(atomic_output(out_path))
            h5 = stack.enter_context(h5py.File(tmp, "w"))
            outputs.append(
                _open_prediction(
                    h5,
                    d,
                    scalers,
                    arrays_file,
                    n,
                    groups,
                    rows,
                    info.n_rows,
                    precision,
                    regrid,
                    noise=(noise[1], noise[2], int(noise_draws)) if noise[0] is not None else None,
                )
            )
        items = prefetch(chunks(), prefetch_chunks) if prefetch_chunks > 0 else chunks()
        desc = "predict" if len(members) == 1 else f"predict ({len(members)} members)"
        with tqdm(total=n, unit="star", disable=not progress, desc=desc) as bar:
            for row, block, per_member in items:
                sid = block["source_id"]
                start = row - first
                stop = start + len(sid)
                for (d, scalers, _, _, predict, noise), (sid_ds, preds), inputs in zip(
                    members, outputs, per_member, strict=True
                ):
                    sid_ds[start:stop] = sid
                    if noise[0] is not None:
                        _predict_with_noise(
                            noise[0], noise[1], Path(d).name, scalers, block, inputs, preds,
                            start, stop,
                        )  # fmt: skip
                        continue
                    for g, x in inputs.items():
                        y = scalers.unscale_labels(predict(x))
                        for j, lab in enumerate(scalers.labels):
                            preds[g, lab][start:stop] = y[:, j]
                bar.update(len(sid))


def _predict_with_noise(
    noise: NoisePredictor,
    sources: Sequence[str],
    member: str,
    scalers: Scalers,
    block: Mapping[str, np.ndarray],
    inputs: Mapping[str, Mapping[str, np.ndarray]],
    preds: Mapping,
    start: int,
    stop: int,
) -> None:
    """One chunk of one member: each group's labels and their spread under the input
    noise (:class:`NoisePredictor`), into the ``preds`` datasets [start, stop).  A group
    with nothing to draw (the withheld predictions where only the parallax is drawn) is
    predicted once, its spread 0."""
    features = noise.features(inputs["pred"])  # the RVS input is the same in every group
    key = zlib.crc32(member.encode())  # each member its own draws, each star the same ones
    for g, x in inputs.items():
        withheld = g == WITHHELD_GROUP
        draw = (
            input_drawer(scalers, block, x, sources, key, parallax_withheld=withheld)
            if drawn_sources(sources, withheld)
            else None
        )
        y, ys = noise(x, features, draw)
        y = scalers.unscale_labels(y)
        if ys is None:
            spread = np.zeros_like(y)
        else:
            spread = np.stack([scalers.unscale_labels(v) for v in ys]).std(axis=0, ddof=1)
        for j, lab in enumerate(scalers.labels):
            preds[g, lab][start:stop] = y[:, j]
            preds[noise_group(g), lab][start:stop] = spread[:, j]


def _quiet_retracing_warning() -> None:
    """Filter TensorFlow's "triggered tf.function retracing" warning (once per process)."""
    import logging

    logger = logging.getLogger("tensorflow")
    if not any(getattr(f, "gaiacnn_retracing", False) for f in logger.filters):

        def drop(record: logging.LogRecord) -> bool:
            return "triggered tf.function retracing" not in record.getMessage()

        drop.gaiacnn_retracing = True  # type: ignore[attr-defined]
        logger.addFilter(drop)


def _open_prediction(
    h5: h5py.File,
    member_dir,
    scalers: Scalers,
    arrays_file,
    n: int,
    groups: list[str],
    rows: tuple[int, int] | None,
    n_rows_total: int,
    precision: str,
    regrid: Mapping,
    noise: tuple[list[str], list[str], int] | None = None,
) -> tuple[h5py.Dataset, dict]:
    """A member's prediction file's attributes and empty datasets: (source_id, {(group,
    label): dataset}); ``noise`` (sources drawn, skipped, draws): the groups of the input
    noise's spread too."""
    h5.attrs["member_dir"] = str(member_dir)
    if rows is not None:
        h5.attrs["shard_start"], h5.attrs["shard_stop"] = int(rows[0]), int(rows[1])
        h5.attrs["n_rows_total"] = n_rows_total
    if precision != "float32":
        h5.attrs["precision"] = precision
    h5.attrs["arrays_file"] = str(arrays_file)
    h5.attrs["labels"] = json.dumps(scalers.labels)
    h5.attrs["branches"] = json.dumps(scalers.branches)
    h5.attrs["xp_input"] = scalers.xp_input or ""
    if scalers.parallax_withheld_snr is not None:
        # the S/N below which the parallax was withheld (phot_input intrinsic_withheld)
        h5.attrs["parallax_withheld_snr"] = float(scalers.parallax_withheld_snr)
    if regrid:
        h5.attrs["resampled"] = json.dumps(sorted(regrid))
    if WITHHELD_GROUP in groups:
        h5.attrs["withheld_predictions"] = True
    if noise is not None:
        sources, skipped, draws = noise
        h5.attrs["input_noise"] = json.dumps(list(sources))
        h5.attrs["input_noise_draws"] = int(draws)
        h5.attrs["input_noise_skipped"] = json.dumps(list(skipped))
        groups = [*groups, *(noise_group(g) for g in groups)]
    sid_ds = h5.create_dataset("source_id", shape=(n,), dtype=np.int64)
    preds = {
        (g, lab): h5.create_dataset(f"{g}/{lab}", shape=(n,), dtype=np.float32)
        for g in groups
        for lab in scalers.labels
    }
    return sid_ds, preds
