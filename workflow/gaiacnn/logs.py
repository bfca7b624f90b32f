"""The log of a workflow job: INFO lines to stderr, the project's own errors as one line,
and TensorFlow held to the job's threads."""

from __future__ import annotations

import logging
import os

log = logging.getLogger("gaiacnn")

#: The project's own errors, ``(module, class)``: their messages name the file and the
#: problem, so a rule that stops on one logs that one line and no traceback.  Looked up in
#: ``sys.modules`` when raised (an error's module is imported by then), so that setting up
#: the log imports nothing.
_USER_ERRORS: tuple[tuple[str, str], ...] = (
    ("gaiacnn.layout", "LayoutError"),
    ("gaiacnn.shards", "ShardError"),
    ("gaiacnn.tsne", "TsneError"),
    ("gaiacnn.ensemble", "EnsembleError"),
    ("gaiacnn.config", "ConfigError"),
    ("gaiacnn.archive", "ArchiveError"),
    ("gaiacnn.io", "OutputWriteError"),  # atomic_output: disk full, quota, file size limit
    ("gaiacnn.io", "UnreadableResult"),  # a result read back that is not what it should be
    ("gaiacnn.model", "MemberError"),
    ("gaiacnn.flags", "FlagError"),
    ("gaiacnn.selection", "SelectionError"),
    ("gaiacnn.tables", "TableError"),
)


def _h5py_retry(exc: BaseException | None, tb) -> bool:
    """An h5py object that, being freed, tries again to close a file that the disk had no
    room for: h5py prints each such error (through both hooks), though it was reported
    once already (:class:`gaiacnn.io.OutputWriteError`)."""
    from gaiacnn.io import out_of_room

    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return (
        tb is not None
        and tb.tb_frame.f_code.co_name.endswith("__dealloc__")  # a Cython frame
        and out_of_room(exc) is not None
    )


def _log_user_error(exc_type, exc, tb) -> None:
    """``sys.excepthook``: for :data:`_USER_ERRORS` one ``ERROR <message>`` line and exit
    status 1, at once: the interpreter's clean-up is skipped, since h5py would retry there
    the writes of a file that the disk had no room for (a traceback per object, then a
    crash).  Anything else: the usual traceback."""
    import sys

    if _h5py_retry(exc, tb):
        return
    known = tuple(
        getattr(sys.modules[module], name)
        for module, name in _USER_ERRORS
        if module in sys.modules and hasattr(sys.modules[module], name)
    )
    if not isinstance(exc, known):
        sys.__excepthook__(exc_type, exc, tb)
        return
    log.error("%s", " ".join(str(exc).split()))
    logging.shutdown()  # flushes the handlers
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(1)


def _drop_h5py_retry(unraisable) -> None:
    """``sys.unraisablehook``: as the default one, but without :func:`_h5py_retry`."""
    import sys

    if not _h5py_retry(unraisable.exc_value, unraisable.exc_traceback):
        sys.__unraisablehook__(unraisable)


def setup_logging() -> None:
    """Log INFO lines to stderr (redirected to the rule's log file by the scripts); an
    uncaught error of the project's own (:data:`_USER_ERRORS`) ends the log with one
    ``ERROR <message>`` line instead of a traceback (and h5py's repeats of a failed write
    are not printed)."""
    import sys

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", force=True
    )
    sys.excepthook = _log_user_error
    sys.unraisablehook = _drop_h5py_retry


def configure_tensorflow(threads: int) -> None:
    """Limit TensorFlow to the job's ``threads`` (Snakemake's allocation) before any op runs.

    A job runs in a fresh process; where TensorFlow already ran in this process (a test, a
    benchmark) its thread pools are kept as they are."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep C++ info lines out of the logs
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(max(1, int(threads)))
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        log.debug("TensorFlow already initialised in this process: thread pools kept")
