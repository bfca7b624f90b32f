"""Peak memory as the benchmarks measure it: the process's own, not its parent's."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gaiacnn.memory import peak_rss_mib

WORKFLOW = str(Path(__file__).resolve().parents[1] / "workflow")


def _child(code: str) -> list[float]:
    """Run ``code`` in a fresh Python that has imported ``peak_rss_mib``; the floats it prints."""
    head = (
        f"import sys; sys.path.insert(0, {WORKFLOW!r}); from gaiacnn.memory import peak_rss_mib\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", head + code], capture_output=True, text=True, check=True
    )
    return [float(x) for x in out.stdout.split()]


def test_peak_grows_with_what_the_process_holds():
    before, after = _child(
        "import numpy as np; b = peak_rss_mib(); x = np.ones(64 * 2**20 // 8)\n"
        "print(b, peak_rss_mib())"
    )
    assert 60 <= after - before <= 80


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="needs Linux /proc")
def test_a_child_of_a_big_parent_does_not_report_the_parent():
    # getrusage's ru_maxrss would report >= the parent's 256 MiB: it survives fork + exec
    block = np.ones(256 * 2**20 // 8)
    (child,) = _child("print(peak_rss_mib())")
    assert block.nbytes == 256 * 2**20 and peak_rss_mib() > 256
    assert child < 128
