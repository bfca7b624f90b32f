"""Peak memory of the running process, for logs and benchmarks."""

from __future__ import annotations

import resource
import sys


def peak_rss_mib() -> float:
    """Peak resident memory of this process in MiB.

    On Linux this is ``VmHWM`` of ``/proc/self/status``: the high-water mark of this
    process's own memory since it was started.  ``getrusage``'s ``ru_maxrss`` is not: it
    survives ``fork`` + ``exec``, so a process started from a big Python parent reports at
    least the parent's size at the time of the fork.  Elsewhere ``ru_maxrss`` is the best
    there is (kilobytes on Linux, bytes on macOS)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 1024**2 if sys.platform == "darwin" else rss / 1024
