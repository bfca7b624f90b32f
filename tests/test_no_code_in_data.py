"""No file that is read can run code (issue 27): the workflow's code names no object
serialisation (Python's own, joblib's, numpy's object arrays, marshal, shelve, dill) and
no ``eval``/``exec``, not even in a comment or docstring, so that a plain
``grep -rnE "pickle|joblib|allow_pickle=True" workflow`` finds nothing.  What the
workflow does read, and that a file planted in its place is refused, is
tests/test_planted_files.py."""

from __future__ import annotations

import inspect
import re

import numpy as np
from workflow_helpers import REPO

#: pattern -> why it is refused
FORBIDDEN = {
    r"pickle": "Python object serialisation (loading runs code the file names)",
    r"joblib": "joblib's files are Python object serialisation",
    r"allow_pickle\s*=\s*True": "numpy object arrays are Python object serialisation",
    r"\beval\(": "eval runs code",
    r"\bexec\(": "exec runs code",
    r"\bmarshal\b": "marshal loads code objects",
    r"\bshelve\b": "shelve is Python object serialisation",
    r"\bdill\b": "dill is Python object serialisation",
    r"yaml\.(unsafe_)?load\(|yaml\.(Unsafe|Full)?Loader\b": "yaml's full loaders build objects",
    r"safe_mode\s*=\s*False|enable_unsafe_deserialization": "Keras's unsafe loading",
    r"__import__\(": "imports a module a file could name",
}


def workflow_files():
    """Every text file of the workflow: the package, the rules, the scripts, the Snakefile."""
    paths = [REPO / "Snakefile"]
    paths += sorted(
        p
        for p in (REPO / "workflow").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix not in {".pyc", ".png"}
    )
    return paths


def test_the_workflow_names_no_object_serialisation_and_no_eval():
    files = workflow_files()
    assert any(p.name == "maps.py" for p in files) and any(p.suffix == ".smk" for p in files)
    found = []
    for path in files:
        text = path.read_text(encoding="utf-8", errors="replace")
        for n, line in enumerate(text.splitlines(), 1):
            for pattern, why in FORBIDDEN.items():
                if re.search(pattern, line):
                    found.append(f"{path.relative_to(REPO)}:{n}: {why}: {line.strip()}")
    assert not found, "\n".join(found)


def test_the_patterns_catch_what_they_are_for():
    """The check is not vacuous: each pattern finds the code it stands for."""
    samples = [
        "import pickle",
        "joblib.dump(model, path)",
        "np.load(path, allow_pickle=True)",
        "eval(text)",
        "exec(code)",
        "marshal.loads(data)",
        "import shelve",
        "dill.load(fh)",
        "yaml.load(fh, Loader=yaml.Loader)",
        "keras.models.load_model(path, safe_mode=False)",
        "__import__(name)",
    ]
    for pattern, sample in zip(FORBIDDEN, samples, strict=True):
        assert re.search(pattern, sample), (pattern, sample)
    # and does not trip over the words the workflow does use
    for ok in ("evaluate(table)", "yaml.safe_load(fh)", "run_evaluation(", "executor"):
        assert not any(re.search(p, ok) for p in FORBIDDEN), ok


def test_numpy_refuses_object_arrays_by_default():
    """The workflow's .npz files are read with numpy's defaults, which refuse object arrays
    (so the code does not need to name the option at all)."""
    assert inspect.signature(np.load).parameters["allow_pickle"].default is False
