"""Records, for each Snakemake script job, the distributions that the job's own code
imports (the script and the gaiacnn package; not what those libraries import in turn).

Put on PYTHONPATH with GAIACNN_IMPORT_AUDIT=<folder> (tests/workflow_helpers.audit_env);
every script job then writes <folder>/<script>.<pid>.json at exit.  tests/test_envs.py
checks each against the conda environment of the job's rule (envs/).  Inactive in every
other process."""

from __future__ import annotations

import os
import sys

_OUT = os.environ.get("GAIACNN_IMPORT_AUDIT")
_SCRIPT = next((a for a in sys.argv if "/.snakemake/scripts/" in a), None)

if _OUT and _SCRIPT:
    import atexit
    import builtins
    import json

    _seen: set[str] = set()
    _import = builtins.__import__

    def _audited_import(name, globals=None, locals=None, fromlist=(), level=0):
        if level == 0 and globals is not None:
            who = globals.get("__name__") or ""
            if who == "__main__" or who == "gaiacnn" or who.startswith("gaiacnn."):
                _seen.add(name.partition(".")[0])
        return _import(name, globals, locals, fromlist, level)

    def _write() -> None:
        import importlib.metadata as md

        owners = md.packages_distributions()
        dists = sorted({d for top in _seen for d in owners.get(top, [])})
        script = os.path.basename(_SCRIPT).split(".", 1)[1]  # tmpXXXX.<script>.py
        path = os.path.join(_OUT, f"{script.removesuffix('.py')}.{os.getpid()}.json")
        with open(path, "w") as fh:
            json.dump({"script": script, "distributions": dists}, fh)

    builtins.__import__ = _audited_import
    atexit.register(_write)
