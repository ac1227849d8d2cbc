"""CPU cores a job may use: affinity, SMT siblings and cgroup quotas."""

import os

import pytest

from memgen.runtime import cgroup_cpu_quota, usable_cores


@pytest.mark.parametrize("cpu_max, cpus", [("200000 100000\n", 2), ("150000 100000\n", 2), ("max 100000\n", None),
                                           ("50000 100000\n", 1)])
def test_cgroup_v2_quota_rounds_up_to_whole_cpus(tmp_path, cpu_max, cpus):
    (tmp_path / "cpu.max").write_text(cpu_max)
    assert cgroup_cpu_quota(tmp_path) == cpus


def test_cgroup_v1_quota_and_no_cgroup(tmp_path):
    assert cgroup_cpu_quota(tmp_path) is None
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("300000\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert cgroup_cpu_quota(tmp_path) == 3
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    assert cgroup_cpu_quota(tmp_path) is None


def test_usable_cores_follow_the_affinity_mask():
    cpus = os.sched_getaffinity(0)
    assert 1 <= usable_cores() <= len(cpus)
    try:
        os.sched_setaffinity(0, {min(cpus)})
        assert usable_cores() == 1
    finally:
        os.sched_setaffinity(0, cpus)
