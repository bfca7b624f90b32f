"""Settings of the CNN: branch names, member files, default architecture and training."""

from __future__ import annotations

from typing import Any

from gaiacnn.config import schema_defaults
from gaiacnn.layout import RVS_FLUX_DATASET

#: Model branches, in the order of the paper's Fig. 6 description (Sect. 3.1).
BRANCHES: tuple[str, ...] = ("rvs", "phot", "xp")
PARALLAX_DATASET = "astrometry/parallax"
RVS_DATASET = RVS_FLUX_DATASET

#: Files of a trained member directory.
MODEL_FILE = "model.keras"
SCALERS_FILE = "scalers.json"
HISTORY_FILE = "history.json"
MEMBER_FILES = (MODEL_FILE, SCALERS_FILE, HISTORY_FILE)

#: 2: the input contract (wavelength grids, XP input form) is part of the file; 3: the
#: "intrinsic" photometry input no longer holds the parallax error ("intrinsic_with_error"
#: does), so a member of format 2 is refused rather than fed inputs of another width.
SCALERS_FORMAT_VERSION = 3
#: Two wavelength grids are the same when no sample differs by more than this [nm].
GRID_TOLERANCE_NM = 1e-4

#: Architecture and training settings (Guiglion et al. 2024, Sect. 3.1-3.2, Fig. 6): the
#: defaults of ``model.arch`` and ``model.training`` in config/schema.yaml, read from it
#: (config/config.yaml says for each value which section states it, or that the paper is
#: silent).  A run's own values come from its configuration; these serve library callers.
DEFAULT_ARCH: dict[str, Any] = schema_defaults("model.arch")
DEFAULT_TRAINING: dict[str, Any] = schema_defaults("model.training")

#: Learning-rate schedules of :func:`train_member` (``training["schedule"]``).
SCHEDULES: tuple[str, ...] = ("plateau", "one_cycle")

#: Compute precisions of :func:`make_predictor` / :func:`predict_file`.
PRECISIONS: tuple[str, ...] = ("float32", "mixed_bfloat16")


class MemberError(RuntimeError):
    """A member directory that is missing files or does not fit the data."""
