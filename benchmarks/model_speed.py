#!/usr/bin/env python
"""Benchmark: training and prediction speed of the hybrid CNN (gaiacnn.model) on this machine.

Builds (once, cached under --workdir) a synthetic training layout file of N demo-physics
stars (NaN pixels filled, labels = the simulated truth), then prints:

* training samples/s at each --batch-sizes and --train-precisions, timed over
  --timed-epochs epochs after one warm-up epoch, on --throughput-stars training rows;
* prediction stars/s of one member at each --predict-precisions (``make_predictor``), and
  the label difference of each precision from float32 in units of the label's dispersion
  over the sample (max and 99th percentile of |delta| / sigma_label);
* the machine (cores, AVX512_BF16 / AMX flags) and the peak RSS of this process.

The member used for prediction is trained briefly (--quick-epochs) on the file and cached.
``--full-member`` also trains one paper-size member (75 % of N) with the default training
schedule (or --training JSON overrides) and prints the wall time to its best validation
loss and the epoch count (it may take an hour on 2 cores).  ``--schedules`` compares
training schedules on the file (each a JSON dict of training overrides).  Run on demand::

    .venv/bin/python benchmarks/model_speed.py --workdir /tmp/model-bench
    .venv/bin/python benchmarks/model_speed.py --n-stars 10000 --schedules \\
        '{}' '{"batch_size": 512, "learning_rate": 0.002, "lr_warmup_epochs": 5}'
    .venv/bin/python benchmarks/model_speed.py --skip-throughput --skip-predict --pipeline

It is not a test: numbers depend on the machine (and on whatever else runs on it).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow"))

from gaiacnn.memory import peak_rss_mib  # noqa: E402

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

LABELS = ["teff", "logg", "m_h", "alpha_m", "fe_h"]
BRANCHES = ["rvs", "phot", "xp"]


# --------------------------------------------------------------------------- data


def build_layout(path: Path, n: int, seed: int, chunk: int = 4096) -> Path:
    """Write ``path`` (if absent): n demo stars in the layout, NaN pixels filled, truth labels."""
    if path.is_file():
        return path
    from gaiacnn import layout
    from gaiacnn.constants import rvs_wavelength_nm
    from gaiacnn.demo.physics import simulate_stars
    from gaiacnn.spectra import fill_nan_pixels

    wl = rvs_wavelength_nm()
    scalars = {
        "rvs/snr": "snr",
        "phot/g": "phot_g_mean_mag",
        "phot/bp": "phot_bp_mean_mag",
        "phot/rp": "phot_rp_mean_mag",
        "astrometry/parallax": "parallax",
        "astrometry/parallax_error": "parallax_error",
        "astrometry/ruwe": "ruwe",
    }
    columns: dict[str, tuple] = {
        "source_id": ((), np.int64, {}),
        "rvs/flux": ((wl.size,), np.float32, {"wavelength_nm": wl}),
        "xp/bp_coefficients": ((55,), np.float32, {}),
        "xp/rp_coefficients": ((55,), np.float32, {}),
        **{name: ((), np.float32, {}) for name in scalars},
        **{f"labels/{lab}": ((), np.float32, {}) for lab in LABELS},
    }
    attrs = {
        "sample": "benchmark",
        "n_stars": n,
        "provenance": layout.provenance_attr(source="benchmarks/model_speed.py", seed=seed),
    }
    t0 = time.perf_counter()
    path.parent.mkdir(parents=True, exist_ok=True)
    with layout.ArraysWriter(path, n, columns, attrs=attrs, chunk_rows=256) as writer:
        for i, start in enumerate(range(0, n, chunk)):
            m = min(chunk, n - start)
            truth, obs = simulate_stars(np.random.default_rng([seed, i]), m)
            flux, _ = fill_nan_pixels(obs["flux"], wl)
            block = {
                "source_id": np.arange(start, start + m, dtype=np.int64) + 10**15,
                "rvs/flux": flux,
                "xp/bp_coefficients": obs["bp_coefficients"],
                "xp/rp_coefficients": obs["rp_coefficients"],
                **{name: obs[col] for name, col in scalars.items()},
                **{f"labels/{lab}": truth[lab].astype(np.float32) for lab in LABELS},
            }
            writer.append(block)
            print(f"  built {start + m}/{n} stars", file=sys.stderr, flush=True)
    print(f"built {path} ({n} stars) in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return path


# --------------------------------------------------------------------------- machine


def machine() -> dict:
    flags: set[str] = set()
    model = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags.update(line.split(":", 1)[1].split())
            elif line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    import tensorflow as tf

    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "avx512_bf16": "avx512_bf16" in flags,
        "amx_bf16": "amx_bf16" in flags,
        "amx_tile": "amx_tile" in flags,
        "tensorflow": tf.__version__,
        "tf_threads(intra,inter)": (
            tf.config.threading.get_intra_op_parallelism_threads(),
            tf.config.threading.get_inter_op_parallelism_threads(),
        ),
        "loadavg_1min_at_start": os.getloadavg()[0],
    }


# --------------------------------------------------------------------------- training speed


def _timer_class():
    import keras

    class EpochTimer(keras.callbacks.Callback):
        """Wall time of each epoch (s)."""

        def __init__(self):
            super().__init__()
            self.times: list[float] = []

        def on_epoch_begin(self, epoch, logs=None):
            self._t = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.times.append(time.perf_counter() - self._t)

    return EpochTimer


def training_throughput(
    path: Path, n_rows: int, batch_sizes, precisions, timed_epochs: int, augment: float = 0.0
):
    """Samples/s of model.fit per (precision, batch size): 1 warm-up epoch, then timed ones.

    ``augment`` > 0 feeds the batches through :class:`gaiacnn.model.AugmentedBatches` (noise
    down to that S/N, as ``train_member`` does with ``augment_snr_min``)."""
    import keras

    from gaiacnn import model as gm

    EpochTimer = _timer_class()
    rows = np.arange(n_rows, dtype=np.int64)
    sc = gm.fit_scalers(path, rows, LABELS, BRANCHES)
    x, y = gm.load_inputs(path, rows, BRANCHES, sc, LABELS)
    unit, snr = gm.noise_units(path, rows) if augment > 0 else (None, None)
    out = []
    for precision in precisions:
        for bs in batch_sizes:
            if augment > 0:
                data = gm.AugmentedBatches(x, y, unit, snr, batch_size=bs, seed=0,
                                           snr_min=augment, fraction=0.5)  # fmt: skip
                fit_args = {"x": data.dataset(1 + timed_epochs), "steps_per_epoch": len(data)}
            else:
                fit_args = {"x": x, "y": y, "batch_size": bs}
            # every layer under the policy (speed only; a bfloat16-trained model is not kept)
            keras.config.set_dtype_policy(precision)
            try:
                keras.utils.set_random_seed(0)
                model = gm.model_for(sc)
            finally:
                keras.config.set_dtype_policy("float32")
            model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
            timer = EpochTimer()
            model.fit(**fit_args, epochs=1 + timed_epochs, callbacks=[timer], verbose=0)
            times = timer.times
            per_epoch = float(np.median(times[1:]))
            out.append(
                {
                    "precision": precision,
                    "batch_size": bs,
                    "augment_snr_min": augment,
                    "samples_per_s": n_rows / per_epoch,
                    "epoch_s": per_epoch,
                    "warmup_epoch_s": times[0],
                }
            )
            print(f"  train {precision} bs={bs} augment={augment}: "
                  f"{n_rows / per_epoch:.0f} samples/s",
                  file=sys.stderr, flush=True)  # fmt: skip
    return out


# --------------------------------------------------------------------------- prediction


def quick_member(path: Path, workdir: Path, n: int, epochs: int) -> Path:
    from gaiacnn import model as gm

    out = workdir / f"member_n{n}_e{epochs}"
    if not (out / gm.MODEL_FILE).is_file():
        t0 = time.perf_counter()
        gm.train_member(
            path, out, split=0, seed=0, labels=LABELS, branches=BRANCHES,
            training={"max_epochs": epochs},
        )  # fmt: skip
        print(f"trained quick member ({epochs} epochs) in {time.perf_counter() - t0:.0f} s",
              file=sys.stderr)  # fmt: skip
    return out


def prediction_speed(member: Path, path: Path, n_rows: int, precisions, batch_size: int, reps):
    from gaiacnn import model as gm
    from gaiacnn.layout import iter_rows

    model, sc = gm.load_member(member)
    block = next(iter(iter_rows(path, sc.datasets(), n_rows)))[1]
    x = sc.inputs(block)
    n = len(x["rvs"])
    results, preds = [], {}
    for precision in precisions:
        predict = gm.make_predictor(model, batch_size, precision=precision)
        predict({k: v[:batch_size] for k, v in x.items()})  # trace + warm-up
        best = np.inf
        for _ in range(reps):
            t0 = time.perf_counter()
            y = predict(x)
            best = min(best, time.perf_counter() - t0)
        preds[precision] = sc.unscale_labels(y)
        results.append({"precision": precision, "stars_per_s": n / best, "n": n})
        print(f"  predict {precision}: {n / best:.0f} stars/s", file=sys.stderr, flush=True)
    ref = preds[precisions[0]].astype(np.float64)
    sigma = ref.std(axis=0)
    for r in results:
        d = np.abs(preds[r["precision"]] - ref) / sigma
        r["dsig_max"] = {lab: float(d[:, j].max()) for j, lab in enumerate(sc.labels)}
        r["dsig_p99"] = {lab: float(np.percentile(d[:, j], 99)) for j, lab in enumerate(sc.labels)}
    return results, dict(zip(sc.labels, sigma.tolist(), strict=True))


# --------------------------------------------------------------------------- schedules


def train_runs(path: Path, workdir: Path, trainings: list[dict], tag: str):
    """Train one member per training-override dict; wall time to best val loss, epochs."""
    from gaiacnn import model as gm

    out = []
    for i, tr in enumerate(trainings):
        d = workdir / f"{tag}_{i}"
        t0 = time.perf_counter()
        s = gm.train_member(path, d, split=0, seed=0, labels=LABELS, branches=BRANCHES, training=tr)
        wall = time.perf_counter() - t0
        per_epoch = s["train_seconds"] / max(1, s["epochs_run"])  # includes data loading
        row = {
            "training": tr,
            "n_train": s["n_train"],
            "best_val_loss": s["best_val_loss"],
            "best_epoch": s["best_epoch"],
            "epochs_run": s["epochs_run"],
            "wall_s": wall,
            "s_per_epoch": per_epoch,
            "wall_to_best_s_est": per_epoch * s["best_epoch"],
        }
        out.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
    return out


def pipeline_share(path: Path, n_rows: int, timed_epochs: int, training: dict) -> dict:
    """The training data pipeline against the model, per step, at the workflow's settings
    (config.yaml's ``model.training`` and ``phot_input``, with ``training`` overrides; the
    augmentations :func:`gaiacnn.model.train_member` applies to this file, through its own
    :func:`gaiacnn.model.training.training_batches`), on the first ``n_rows`` rows:

    * ``batch_ms``: one batch made in Python (one thread), the pipeline's own work;
    * ``pipeline_ms``: one step of the ``tf.data`` pipeline alone (its threads, no model);
    * ``fed_ms``: one step of ``model.fit`` fed by that pipeline, as in training;
    * ``model_ms``: one step of ``model.fit`` on the same batches made beforehand and served
      from memory (the model alone);
    * ``outside_share`` = 1 - model_ms / fed_ms: the share of a training step spent outside
      the model (waiting for data or on the pipeline's threads' CPU time).

    Steps are the medians over ``timed_epochs`` epochs after one warm-up epoch."""
    import keras
    import tensorflow as tf
    import yaml

    from gaiacnn import model as gm
    from gaiacnn.layout import PARALLAX_DATASET, PARALLAX_ERROR_DATASET
    from gaiacnn.model.training import training_batches

    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())["model"]
    tr = gm._merge(gm.DEFAULT_TRAINING, {**cfg["training"], **training}, "training")
    rows = np.arange(n_rows, dtype=np.int64)
    sc = gm.fit_scalers(path, rows, LABELS, BRANCHES, cfg["xp_input"], cfg["phot_input"],
                        withheld_snr=float(tr["withhold_parallax_below_snr"]))  # fmt: skip
    has_plx = PARALLAX_DATASET in sc.phot_columns
    data = training_batches(
        path, rows, *gm.load_inputs(path, rows, BRANCHES, sc, LABELS), sc, tr, 0,
        rvs=float(tr["augment_snr_min"]) > 0 and float(tr["augment_fraction"]) > 0,
        parallax=has_plx and float(tr["augment_parallax_snr_min"]) > 0
        and float(tr["augment_parallax_fraction"]) > 0,
        withhold=has_plx and sc.phot_input == "intrinsic_withheld",
        xp=bool(tr["augment_xp"]),
        plx_names=list(dict.fromkeys([*sc.phot_columns, PARALLAX_ERROR_DATASET])),
    )  # fmt: skip
    if data is None:
        return {"augmented": False}
    steps = len(data) - 1  # full batches only (the last one may be short)
    epochs = 1 + timed_epochs
    t0 = time.perf_counter()
    made = [data.batch(k) for k in range(steps)]
    batch_ms = 1e3 * (time.perf_counter() - t0) / steps
    t0 = time.perf_counter()
    for _ in data.dataset(1).take(steps):
        pass
    pipeline_ms = 1e3 * (time.perf_counter() - t0) / steps
    names = data.names
    memory = tf.data.Dataset.from_tensor_slices(
        ({k: np.stack([b[0][k] for b in made]).astype(np.float32) for k in names},
         np.stack([b[1] for b in made]).astype(np.float32))
    ).repeat()  # fmt: skip
    del made
    EpochTimer = _timer_class()
    per_step = {}
    for name, feed in (("fed", data.dataset(epochs * (steps + 1))), ("model", memory)):
        keras.utils.set_random_seed(0)
        net = gm.model_for(sc)
        net.compile(optimizer=keras.optimizers.Adam(float(tr["learning_rate"])),
                    loss=gm.masked_mse)  # fmt: skip
        timer = EpochTimer()
        net.fit(feed, steps_per_epoch=steps, epochs=epochs, callbacks=[timer], verbose=0)
        per_step[name] = 1e3 * float(np.median(timer.times[1:])) / steps
        print(f"  pipeline: {name} {per_step[name]:.1f} ms/step", file=sys.stderr, flush=True)
    return {
        "augmented": True,
        "n_rows": n_rows,
        "batch_size": int(tr["batch_size"]),
        "steps_per_epoch": steps,
        "batch_ms": batch_ms,
        "pipeline_ms": pipeline_ms,
        "fed_ms": per_step["fed"],
        "model_ms": per_step["model"],
        "outside_share": 1.0 - per_step["model"] / per_step["fed"],
    }


# --------------------------------------------------------------------------- main


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--n-stars", type=int, default=44_780, help="stars in the training file")
    p.add_argument("--seed", type=int, default=0, help="demo-physics seed of the file")
    p.add_argument("--workdir", type=Path, default=Path("/tmp/gaiacnn-model-bench"))
    p.add_argument("--batch-sizes", default="128,256,512", help="training batch sizes")
    p.add_argument("--train-precisions", default="float32,mixed_bfloat16")
    p.add_argument("--throughput-stars", type=int, default=8192,
                   help="rows used to time training epochs")  # fmt: skip
    p.add_argument("--timed-epochs", type=int, default=2)
    p.add_argument("--augment", type=float, default=0.0,
                   help="also time training with noise augmentation down to this S/N")  # fmt: skip
    p.add_argument("--predict-precisions", default="float32,mixed_bfloat16")
    p.add_argument("--predict-stars", type=int, default=8192)
    p.add_argument("--predict-batch", type=int, default=2048)
    p.add_argument("--predict-reps", type=int, default=3)
    p.add_argument("--quick-epochs", type=int, default=15,
                   help="epochs of the member used for prediction timing/accuracy")  # fmt: skip
    p.add_argument("--skip-throughput", action="store_true")
    p.add_argument("--skip-predict", action="store_true")
    p.add_argument("--full-member", action="store_true",
                   help="train one paper-size member (75%% of N) and time it")  # fmt: skip
    p.add_argument("--training", default="{}", help="JSON training overrides for --full-member")
    p.add_argument("--schedules", nargs="*", default=[],
                   help="JSON training-override dicts to compare on the file")  # fmt: skip
    p.add_argument(
        "--pipeline",
        action="store_true",
        help="the training data pipeline's share of a step (pipeline_share)",
    )
    p.add_argument(
        "--pipeline-stars",
        type=int,
        default=33_585,
        help="training rows of --pipeline (default: a paper-size member's)",
    )
    p.add_argument("--json", type=Path, help="also write all results to this JSON file")
    p.add_argument("--no-record", action="store_true", help="do not append to results.csv")
    a = p.parse_args()

    workdir = a.workdir
    path = build_layout(workdir / f"train_n{a.n_stars}_s{a.seed}.h5", a.n_stars, a.seed)
    res: dict = {"machine": machine(), "n_stars": a.n_stars, "file": str(path)}
    if not a.skip_throughput:
        res["training"] = training_throughput(
            path,
            min(a.throughput_stars, a.n_stars),
            [int(b) for b in a.batch_sizes.split(",")],
            a.train_precisions.split(","),
            a.timed_epochs,
        )
        if a.augment > 0:
            res["training"] += training_throughput(
                path,
                min(a.throughput_stars, a.n_stars),
                [int(b) for b in a.batch_sizes.split(",")],
                ["float32"],
                a.timed_epochs,
                augment=a.augment,
            )
    if not a.skip_predict:
        member = quick_member(path, workdir, a.n_stars, a.quick_epochs)
        res["prediction"], res["label_sigma"] = prediction_speed(
            member,
            path,
            min(a.predict_stars, a.n_stars),
            a.predict_precisions.split(","),
            a.predict_batch,
            a.predict_reps,
        )
    if a.pipeline:
        res["pipeline"] = pipeline_share(
            path, min(a.pipeline_stars, a.n_stars), a.timed_epochs, json.loads(a.training)
        )
    if a.schedules:
        res["schedules"] = train_runs(path, workdir, [json.loads(s) for s in a.schedules], "sch")
    if a.full_member:
        res["full_member"] = train_runs(path, workdir, [json.loads(a.training)], "full")[0]
    res["peak_rss_mib"] = peak_rss_mib()
    report(res)
    if a.json:
        a.json.write_text(json.dumps(res, indent=1))
    sys.path.insert(0, str(REPO / "benchmarks"))
    import results

    results.record("model_speed", a, res)


def report(res: dict) -> None:
    m = res["machine"]
    print(f"\nmachine: {m['cpu']}, {m['cores']} cores, AVX512_BF16={m['avx512_bf16']}, "
          f"AMX_BF16={m['amx_bf16']}, TF {m['tensorflow']}, "
          f"load(1 min) at start {m['loadavg_1min_at_start']:.2f}")  # fmt: skip
    print(f"training file: {res['n_stars']} stars ({res['file']})")
    if "training" in res:
        print("\ntraining (model.fit, Adam)      batch   samples/s   s/epoch(of timed rows)")
        for r in res["training"]:
            name = r["precision"] + (
                f" +augment {r['augment_snr_min']:g}" if r["augment_snr_min"] else ""
            )
            print(f"  {name:<28s} {r['batch_size']:>6d} {r['samples_per_s']:>11.0f} "
                  f"{r['epoch_s']:>10.2f}")  # fmt: skip
    if "prediction" in res:
        print("\nprediction (make_predictor)     stars/s   |d|/sigma max, p99 per label")
        for r in res["prediction"]:
            dev = ", ".join(
                f"{lab} {r['dsig_max'][lab]:.3f}/{r['dsig_p99'][lab]:.3f}" for lab in r["dsig_max"]
            )
            print(f"  {r['precision']:<28s} {r['stars_per_s']:>8.0f}   {dev}")
        print("  label sigma over the sample: "
              + ", ".join(f"{k} {v:.3g}" for k, v in res["label_sigma"].items()))  # fmt: skip
    if res.get("pipeline", {}).get("augmented"):
        r = res["pipeline"]
        print(f"\ntraining data pipeline ({r['n_rows']} rows, batch {r['batch_size']}, "
              f"{r['steps_per_epoch']} steps/epoch), ms per step: a batch made in Python "
              f"{r['batch_ms']:.1f}, the tf.data pipeline alone {r['pipeline_ms']:.1f}, "
              f"fit fed by it {r['fed_ms']:.1f}, fit on batches in memory {r['model_ms']:.1f}: "
              f"{100 * r['outside_share']:.1f} % of a step outside the model")  # fmt: skip
    for key in ("schedules", "full_member"):
        rows = res.get(key)
        if rows is None:
            continue
        print(f"\n{key}: training overrides -> best val loss, best epoch / epochs run, wall")
        for r in rows if isinstance(rows, list) else [rows]:
            print(f"  {json.dumps(r['training'])}: {r['best_val_loss']:.5g} at epoch "
                  f"{r['best_epoch']}/{r['epochs_run']}, {r['wall_s']:.0f} s total, "
                  f"~{r['wall_to_best_s_est']:.0f} s to best ({r['s_per_epoch']:.1f} s/epoch, "
                  f"n_train {r['n_train']})")  # fmt: skip
    print(f"\npeak RSS: {res['peak_rss_mib']:.0f} MiB")


if __name__ == "__main__":
    main()
