"""profiles/slurm on a real one-node SLURM cluster with accounting (tests/slurm/start_slurm.sh): the real Snakefile on
configs/ci.yaml for two subjects plus the split, and a GPU rule, submitted by snakemake-executor-plugin-slurm; `sacct`
shows what ran. Needs root and apt-get (or the Debian SLURM packages); DMRISCOPE_SKIP_SLURM=1 skips it."""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from dmriscope.cohort.subjects import load_cohort

pytestmark = [pytest.mark.slurm, pytest.mark.workflow]

ROOT = Path(__file__).resolve().parents[1]
HARNESS = ROOT / "tests" / "slurm"
PROFILE = ROOT / "profiles" / "slurm"
# the local cluster's account and partitions (start_slurm.sh), given to the profile the way a site would
SITE_ENV = {
    "DMRISCOPE_SLURM_ACCOUNT": "ci",
    "DMRISCOPE_SLURM_PARTITION": "main",
    "DMRISCOPE_SLURM_GPU_PARTITION": "gpu",
}
CHAIN = ("synthesize_subject", "fit_dki", "register_fa")  # one subject's grouped jobs, in DAG order
N_SUBJECTS = 2
CI_CONFIG = str(ROOT / "configs" / "ci.yaml")
SACCT_FIELDS = ("JobID", "JobName", "State", "Comment", "Account", "Partition", "ReqMem", "Timelimit", "AllocTRES")


def skip_reason() -> str | None:
    """Why this machine cannot run a local SLURM cluster, or None."""
    if os.environ.get("DMRISCOPE_SKIP_SLURM") == "1":
        return "DMRISCOPE_SKIP_SLURM=1"
    if os.geteuid() != 0:
        return "starting slurmctld/slurmd/slurmdbd needs root"
    if shutil.which("slurmctld") is None and shutil.which("apt-get") is None:
        return "SLURM is not installed and there is no apt-get to install it (Debian packages)"
    return None


def profile() -> dict:
    return yaml.safe_load((PROFILE / "config.yaml").read_text())


def profile_value(rule: str, resource: str) -> int:
    """A per-rule resource of the profile at the first attempt (values are expressions over `attempt`)."""
    return int(eval(str(profile()["set-resources"][rule][resource]), {"attempt": 1}))


# rules the profile leaves to their own resources: synthesize_subject computes mem_mb from the grid (rules/common.smk;
# configs/ci.yaml's grid gets the 1500 MB floor) and asks runtime 10 (rules/synthetic.smk)
RULE_OWN = {"synthesize_subject": {"mem_mb": 1500, "runtime": 10}}


def chain_value(rule: str, resource: str) -> int:
    """What a chain member asks for at the first attempt: the profile's set-resources, else the rule's own."""
    return profile_value(rule, resource) if rule in profile()["set-resources"] else RULE_OWN[rule][resource]


def node_size() -> tuple[int, int]:
    """(CPUs, memory in MB) of the cluster's one node."""
    cpus, mem = subprocess.run(
        ["sinfo", "-h", "-N", "-o", "%c %m"], check=True, capture_output=True, text=True
    ).stdout.split()[:2]
    return int(cpus), int(mem)


@pytest.fixture(scope="module")
def slurm_cluster() -> Iterator[tuple[int, int]]:
    """A running cluster; the daemons started for it are stopped by PID afterwards, also when a test fails."""
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    try:
        start = subprocess.run(
            ["bash", str(HARNESS / "start_slurm.sh")], check=False, capture_output=True, text=True, timeout=900
        )
        assert start.returncode == 0, (
            f"start_slurm.sh failed (DMRISCOPE_SKIP_SLURM=1 skips these tests):\n{start.stdout[-2000:]}"
            f"{start.stderr[-3000:]}"
        )
        yield node_size()
    finally:
        subprocess.run(
            ["bash", str(HARNESS / "stop_slurm.sh")], check=False, capture_output=True, text=True, timeout=300
        )


def snakemake(workdir: Path, prefix: str, *args: str) -> subprocess.CompletedProcess:
    """Run Snakemake through the SLURM profile; jobs are named `{prefix}_{run uuid}`."""
    command = [sys.executable, "-m", "snakemake", "--workflow-profile", str(PROFILE), "--directory", str(workdir)]
    command += ["--slurm-init-seconds-before-status-checks", "2", "--slurm-jobname-prefix", prefix, *args]
    return subprocess.run(
        command, check=False, cwd=ROOT, env=os.environ | SITE_ENV, capture_output=True, text=True, timeout=1200
    )


def sacct_jobs(prefix: str) -> list[dict[str, str]]:
    """Accounting rows (whole jobs, no steps) of the jobs named by `snakemake(..., prefix)`."""
    command = ["sacct", "-X", "-n", "-P", "-a", "-S", "now-1days", "--format", ",".join(SACCT_FIELDS)]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    rows = [dict(zip(SACCT_FIELDS, line.split("|"))) for line in out.splitlines()]
    return [row for row in rows if row["JobName"].startswith(f"{prefix}_")]


def rules_of(comment: str) -> set[str]:
    """Rules a job ran, from the plugin's comment: rule_{rule}_wildcards_{...} or rule_{group}_{rule}_{rule}..."""
    rules = {"prepare_template", "build_participants", "split_cohort", "render_table1", *CHAIN}
    body = comment.removeprefix("rule_").split("_wildcards_")[0]
    return {rule for rule in rules if body == rule or f"_{rule}" in f"_{body}"}


@pytest.fixture(scope="module")
def cohort_run(slurm_cluster, tmp_path_factory) -> tuple[Path, list[dict[str, str]], list[str], int]:
    """The real Snakefile through the profile: N_SUBJECTS subjects to template space, and the whole cohort's split.

    Returns the working directory, the run's sacct rows, the subjects registered and the cohort size.
    """
    cohort = load_cohort(yaml.safe_load(Path(CI_CONFIG).read_text()))
    subjects = cohort[:N_SUBJECTS]
    cpus, mem = slurm_cluster
    need_mem = N_SUBJECTS * max(chain_value(rule, "mem_mb") for rule in CHAIN)
    if cpus < N_SUBJECTS or mem < need_mem:
        pytest.skip(f"the node ({cpus} CPUs, {mem} MB) is smaller than a group job of {N_SUBJECTS} chains")
    workdir = tmp_path_factory.mktemp("slurm_cohort")
    prefix = f"dmriscope{uuid.uuid4().hex[:8]}"
    targets = [f"results/registered/sub-{s}/{m}.nii.gz" for s in subjects for m in ("FA", "MD", "MK")]
    targets += ["results/split/split.tsv", "results/tables/table1_cohort.md"]
    # targets first: --configfile takes every word after it
    result = snakemake(workdir, prefix, *targets, "--snakefile", str(ROOT / "Snakefile"), "--configfile", CI_CONFIG)
    assert result.returncode == 0, result.stderr[-4000:]
    return workdir, sacct_jobs(prefix), subjects, len(cohort)


def test_outputs_written_by_slurm_jobs(cohort_run):
    workdir, jobs, subjects, n_cohort = cohort_run
    for subject in subjects:
        for metric in ("FA", "MD", "MK"):
            assert (workdir / f"results/registered/sub-{subject}/{metric}.nii.gz").stat().st_size > 0
        assert (workdir / f"logs/fit_dki/sub-{subject}.log").exists()
    assert len((workdir / "results/split/split.tsv").read_text().splitlines()) == n_cohort + 1
    assert jobs, "sacct lists no job of this run"


def test_every_stage_ran_as_a_completed_slurm_job(cohort_run):
    _, jobs, _, _ = cohort_run
    assert {row["State"] for row in jobs} == {"COMPLETED"}, jobs
    assert {row["Account"] for row in jobs} == {"ci"}
    assert {row["Partition"] for row in jobs} == {"main"}
    ran = set().union(*(rules_of(row["Comment"]) for row in jobs))
    assert ran == {"prepare_template", "build_participants", "split_cohort", "render_table1", *CHAIN}, jobs


def test_subject_chains_share_one_group_job(cohort_run):
    """group-components packs N subjects' chains into one SLURM job, sized from the profile's set-resources."""
    _, jobs, subjects, _ = cohort_run
    grouped = [row for row in jobs if rules_of(row["Comment"]) & set(CHAIN)]
    per_job = profile()["group-components"]["subject_chain"]
    assert len(grouped) == math.ceil(len(subjects) / per_job), grouped
    assert all(rules_of(row["Comment"]) == set(CHAIN) for row in grouped), grouped
    assert len(jobs) == len(grouped) + 4  # prepare_template, build_participants, split_cohort, render_table1
    # the chains run side by side: memory of the largest member per chain, runtime summed along the chain
    width = min(len(subjects), per_job)
    assert grouped[0]["ReqMem"] == f"{width * max(chain_value(r, 'mem_mb') for r in CHAIN)}M"
    minutes = sum(chain_value(rule, "runtime") for rule in CHAIN)
    assert grouped[0]["Timelimit"] == f"{minutes // 60:02d}:{minutes % 60:02d}:00"


def test_gpu_rule_gets_gpu_partition_and_gpu(slurm_cluster, tmp_path):
    """A rule the profile marks `gpu: 1` is sent to the GPU partition with one GPU (the node's fake gres gpu)."""
    rule, mem = "pretrain_mae2d", slurm_cluster[1]
    if mem < profile_value(rule, "mem_mb"):
        pytest.skip(f"the node ({mem} MB) is smaller than the profile's {rule} job")
    (tmp_path / "Snakefile").write_text(
        f'rule {rule}:\n    output: "gpus.txt"\n    shell: "echo ${{{{CUDA_VISIBLE_DEVICES:-none}}}} > {{output}}"\n'
    )
    prefix = f"dmriscope{uuid.uuid4().hex[:8]}"
    result = snakemake(tmp_path, prefix, "--snakefile", str(tmp_path / "Snakefile"))
    assert result.returncode == 0, result.stderr[-4000:]
    (job,) = sacct_jobs(prefix)
    assert (job["State"], job["Partition"], job["Account"]) == ("COMPLETED", "gpu", "ci"), job
    assert "gres/gpu=1" in job["AllocTRES"], job
    assert (tmp_path / "gpus.txt").read_text().strip() != "none"


def test_unset_account_stops_the_run_naming_the_variable(slurm_cluster, tmp_path):
    """Without DMRISCOPE_SLURM_ACCOUNT the run ends at once with the variable's name (plugin 2.6.1 would hang on an
    account SLURM does not know)."""
    (tmp_path / "Snakefile").write_text('rule fit_dki:\n    output: "x.txt"\n    shell: "touch {output}"\n')
    env = {key: value for key, value in (os.environ | SITE_ENV).items() if key != "DMRISCOPE_SLURM_ACCOUNT"}
    command = [sys.executable, "-m", "snakemake", "--workflow-profile", str(PROFILE), "--directory", str(tmp_path)]
    command += ["--snakefile", str(tmp_path / "Snakefile")]
    result = subprocess.run(command, check=False, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "DMRISCOPE_SLURM_ACCOUNT" in result.stderr
    assert not (tmp_path / "x.txt").exists()
