"""The workflow on a real SLURM cluster through profiles/slurm (and profiles/slurm-gpu).

The end-to-end tests need `sbatch` and an idle node: .ci/run brings a one-node cluster up
with ci/slurm-up.sh (root, Debian) and sets GAIACNN_SLURM_REQUIRED=1, so that in CI a
missing cluster fails the test instead of skipping it.  Elsewhere they are skipped with the
reason.  The checks of the profiles themselves need no cluster.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from astropy.table import Table
from workflow_helpers import DATA_SOURCES, workflow_rules

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).parent / "snakemake"
PROFILE = REPO / "profiles" / "slurm"
GPU_PROFILE = REPO / "profiles" / "slurm-gpu"
# The plugin can hang (e.g. on a status command that keeps failing): every run is under
# `timeout -k`, well inside the suite's budget.
RUN_TIMEOUT_S = 480
TARGET = "results/catalogue/catalogue.fits"
# "Job 7 has been submitted with SLURM jobid 42 (log: .../rule_train_member/0_1/42.log)."
# (a rule without wildcards: .../rule_flag_catalogue/43.log)
SUBMITTED = re.compile(
    r"Job (?P<job>\d+) has been submitted with SLURM jobid (?P<slurm>\d+) "
    r"\(log: (?P<log>\S+/rule_(?P<rule>\w+)/(?:(?P<wildcards>[^/]+)/)?\d+\.log)\)\."
)


def slurm_unavailable() -> str | None:
    """Why the SLURM tests cannot run here, or None."""
    if shutil.which("sbatch") is None:
        return "no SLURM here (sbatch not found; ci/slurm-up.sh brings one up, as root)"
    try:
        proc = subprocess.run(
            ["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"sinfo failed: {err}"
    if proc.returncode != 0:
        return f"sinfo failed: {proc.stderr.strip()}"
    states = proc.stdout.split()
    if not {"idle", "mixed"} & set(states):
        return f"no idle SLURM node (sinfo node states: {states or 'none'})"
    return None


def require_slurm() -> None:
    reason = slurm_unavailable()
    if reason is None:
        return
    if os.environ.get("GAIACNN_SLURM_REQUIRED") == "1":
        pytest.fail(f"{reason}; GAIACNN_SLURM_REQUIRED=1 (.ci/run brought SLURM up)")
    pytest.skip(reason)


def cluster_has_gpu() -> bool:
    proc = subprocess.run(["sinfo", "-h", "-o", "%G"], capture_output=True, text=True, timeout=30)
    return "gpu" in proc.stdout


def run_through_slurm(work: Path, profile: Path, *args: str) -> tuple[int, str]:
    """snakemake --profile <profile> under `timeout -k`; its exit status and whole log.
    SLURM jobs it submitted and left behind (a timed-out run) are cancelled."""
    cmd = [
        "timeout", "-k", "10", str(RUN_TIMEOUT_S),
        str(SNAKEMAKE), "-s", str(REPO / "Snakefile"), "--directory", str(work),
        "--profile", str(profile), "--jobs", "4", "--slurm-keep-successful-logs",
        # the tiny jobs take 10-40 s: a first status check after 5 s (then 20, 45, ...)
        # rather than the profile's 10 (then 30, 60, ...) saves about a minute
        "--slurm-init-seconds-before-status-checks", "5", *args,
    ]  # fmt: skip
    proc = subprocess.run(cmd, cwd=work, capture_output=True, text=True)
    log = proc.stdout + proc.stderr
    if proc.returncode != 0:
        ids = [m["slurm"] for m in SUBMITTED.finditer(log)]
        if ids:
            subprocess.run(["scancel", *ids], capture_output=True, timeout=30)
    if proc.returncode in (124, 137):
        log += f"\n[test_slurm] snakemake killed after {RUN_TIMEOUT_S} s (timeout -k)"
    return proc.returncode, log


def submissions(log: str) -> list[re.Match]:
    return list(SUBMITTED.finditer(log))


@pytest.fixture(scope="module")
def slurm_run(tmp_path_factory) -> tuple[Path, str]:
    require_slurm()
    work = tmp_path_factory.mktemp("slurm") / "run"
    shutil.copytree(REPO / "tests" / "integration", work)
    # One thread per job: on a 2-CPU CI node two jobs then share the node (they are mostly
    # start-up: a job step is a whole snakemake plus TensorFlow); 80 s less of about 6 min.
    threads = [
        f"{rule}=1" for rule in ("train_member", "predict_member", "tsne_neighbours", "tsne_joint")
    ]
    rc, log = run_through_slurm(work, PROFILE, TARGET, "--set-threads", *threads)
    (work / "snakemake-slurm.log").write_text(log)
    assert rc == 0, log[-6000:]
    return work, log


@pytest.mark.slow
@pytest.mark.slurm
def test_workflow_runs_through_the_slurm_profile(slurm_run):
    work, log = slurm_run
    catalogue = Table.read(work / TARGET)
    assert len(catalogue) > 0
    jobs = submissions(log)
    # Every job of the run went through sbatch (the demo has no localrules), each its own
    # SLURM job: "N of N steps (100%) done", N submissions, N distinct SLURM job ids.
    steps = re.findall(r"^(\d+) of (\d+) steps \(100%\) done", log, flags=re.M)
    assert steps and steps[-1][0] == steps[-1][1], log[-4000:]
    assert len(jobs) == int(steps[-1][1]) >= 16, log[-4000:]
    assert len({m["slurm"] for m in jobs}) == len(jobs)
    assert {"demo_survey", "build_arrays", "train_member", "predict_member"} <= {
        m["rule"] for m in jobs
    }
    assert "localrule train_member" not in log
    # prediction: one SLURM job per member and shard (2 members x (1 training shard + 2
    # observed shards of 150)), counted by the checkpoint count_rows, gathered per member
    predict = {m["wildcards"] for m in jobs if m["rule"] == "predict_member"}
    assert len(predict) == 6, log[-4000:]
    assert sum(m["rule"] == "gather_predictions" for m in jobs) == 4
    assert sum(m["rule"] == "count_rows" for m in jobs) == 2


@pytest.mark.slow
@pytest.mark.slurm
def test_each_ensemble_member_is_its_own_slurm_job(slurm_run):
    work, log = slurm_run
    members = {m["wildcards"]: m for m in submissions(log) if m["rule"] == "train_member"}
    # The tiny configuration: 1 split x 2 seeds; wildcards split, seed -> "0_0", "0_1".
    assert sorted(members) == ["0_0", "0_1"], log[-4000:]
    assert len({m["slurm"] for m in members.values()}) == 2
    for wildcards, m in members.items():
        # SLURM's own log of that job (kept by --slurm-keep-successful-logs): the job step
        # ran that one member, inside SLURM job <id>.
        slurm_log = Path(m["log"])
        assert slurm_log.is_file(), slurm_log
        assert slurm_log.name == f"{m['slurm']}.log"
        text = slurm_log.read_text()
        split, seed = wildcards.split("_")
        assert f"wildcards: split={split}, seed={seed}" in text, text[-3000:]
        assert "--target-jobs train_member:" in text
        member = work / f"results/ensemble/members/split{split}_seed{seed}/model.keras"
        assert member.is_file()


@pytest.mark.slow
@pytest.mark.slurm
def test_rerun_one_member_on_a_gpu_node(slurm_run):
    """README: rerun one member with -f; through profiles/slurm-gpu it asks for a GPU.
    Opt-in (GAIACNN_SLURM_GPU_TEST=1): about a minute more, and the suite's budget is tight."""
    work, _ = slurm_run
    if os.environ.get("GAIACNN_SLURM_GPU_TEST") != "1":
        pytest.skip("opt-in: set GAIACNN_SLURM_GPU_TEST=1 to rerun a member on a GPU node")
    if not cluster_has_gpu():
        pytest.skip("the cluster advertises no GPU (sinfo %G); ci/slurm-up.sh fakes one")
    member = "results/ensemble/members/split0_seed1/model.keras"
    before = (work / member).stat().st_mtime_ns
    rc, log = run_through_slurm(work, GPU_PROFILE, "--verbose", "-f", member)
    assert rc == 0, log[-6000:]
    jobs = submissions(log)
    assert [(m["rule"], m["wildcards"]) for m in jobs] == [("train_member", "0_1")], log[-4000:]
    sbatch_calls = [line for line in log.splitlines() if "sbatch call:" in line]
    assert len(sbatch_calls) == 1 and "--gres=gpu:1" in sbatch_calls[0], sbatch_calls
    assert (work / member).stat().st_mtime_ns > before


# ---------------------------------------------------------------- the profiles themselves


def load_profile(profile: Path) -> dict:
    return yaml.safe_load((profile / "config.yaml").read_text())


def rule_resources(
    config: dict | None = None, overwrite: dict | None = None
) -> dict[str, dict[str, object]]:
    """Each rule's resources as Snakemake resolves them (its API parses the rules), with
    ``overwrite`` as a profile's ``set-resources``; callables (tmpdir) left out."""
    return {
        rule.name: {
            key: res.value
            for key, res in rule.resources.items()
            if not key.startswith("_") and not res.is_evaluable()
        }
        for rule in workflow_rules(config, overwrite)
    }


@pytest.fixture(scope="module")
def declared() -> dict[str, dict[str, object]]:
    """Every rule of the workflow, under each data source and prediction job layout."""
    rules = {}
    for data in DATA_SOURCES:
        for per_job in ("all", "one"):
            rules |= rule_resources({"data": data, "prediction": {"members_per_job": per_job}})
    return rules


def test_profile_uses_the_slurm_executor_without_sacct():
    for profile in (PROFILE, GPU_PROFILE):
        cfg = load_profile(profile)
        assert cfg["executor"] == "slurm"
        assert cfg["slurm-status-command"] == "squeue"
        assert cfg["slurm-init-seconds-before-status-checks"] <= 15
        assert not any(r.startswith("cpus_per_task") for r in cfg["default-resources"])


def test_the_profiles_predict_one_member_per_job():
    """On a cluster the members predict side by side, each shard once per member: the
    profiles' ``config`` entry, parsed as Snakemake parses --config, says so."""
    from snakemake.cli import parse_config

    for profile in (PROFILE, GPU_PROFILE):
        entries = load_profile(profile)["config"]
        assert parse_config(entries) == {"prediction": {"members_per_job": "one"}}
    names = {r.name for r in workflow_rules({"prediction": {"members_per_job": "one"}})}
    assert "predict_member" in names and "predict_shard" not in names
    names = {r.name for r in workflow_rules()}
    assert "predict_shard" in names and "predict_member" not in names


def test_every_rule_declares_its_resources_and_the_profiles_repeat_none(declared):
    network = {"gaia_query", "apogee_download", "gaia_spectra"}  # localrules
    assert network | {"train_member", "import_arrays"} <= set(declared)
    for rule, res in declared.items():
        if rule != "all":
            assert {"mem_mb", "runtime"} <= set(res), f"{rule} declares {res}"
    for profile in (PROFILE, GPU_PROFILE):
        given = load_profile(profile).get("set-resources") or {}
        assert set(given) <= set(declared), f"{profile}: set-resources names unknown rules"
        for rule, keys in given.items():
            repeated = set(keys) & set(declared[rule])
            assert not repeated, f"{profile}: {rule} {sorted(repeated)} is the rule's own"


def test_gpu_profile_is_the_cpu_profile_plus_a_gpu_for_members():
    cpu, gpu = load_profile(PROFILE), load_profile(GPU_PROFILE)
    assert gpu.pop("set-resources") == {"train_member": {"gres": "gpu:1"}}
    assert "set-resources" not in cpu
    assert gpu == cpu


def test_the_gpu_profile_adds_a_gpu_and_keeps_the_members_own_resources(declared):
    """A profile's set-resources replaces only the keys it names (per rule and key)."""
    overwrite = load_profile(GPU_PROFILE)["set-resources"]
    with_gpu = rule_resources(overwrite=overwrite)
    assert with_gpu["train_member"] == {**declared["train_member"], "gres": "gpu:1"}
    with_gpu |= rule_resources({"prediction": {"members_per_job": "one"}}, overwrite)
    assert with_gpu["predict_member"] == declared["predict_member"]
    assert with_gpu["predict_shard"] == declared["predict_shard"]


def test_only_the_network_rules_are_localrules():
    archive = (REPO / "workflow" / "rules" / "archive.smk").read_text()
    local = re.search(r"localrules:\n((?:\s+\w+,\n)+)", archive)
    assert local, "workflow/rules/archive.smk declares no localrules"
    names = set(re.findall(r"\w+", local[1]))
    assert names == set(re.findall(r"^\s*rule (\w+):", archive, flags=re.M))
    assert names == {"gaia_query", "apogee_download", "gaia_spectra"}
    others = [p for p in (REPO / "workflow" / "rules").glob("*.smk") if p.name != "archive.smk"]
    assert not any("localrule" in p.read_text() for p in [*others, REPO / "Snakefile"])
