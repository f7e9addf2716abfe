"""The ``slurm:`` section: what the schema accepts and the ``sbatch`` options it becomes (no cluster needed)."""
import pytest

import nbcore
from nbcore.plugin import BackendUnavailable, ConfigError

from nb_slurm.allocation import parse_duration, pending_timeout, sbatch_options
from nb_slurm.commands import fields, last_error, slurm_environment


def test_every_resource_becomes_its_sbatch_option_and_extra_args_come_last():
    section = {"backend": "conda", "partition": "gpu", "time": "1:00:00", "cpus_per_task": 8, "mem": "16G",
               "gpus": "a100:2", "gres": "gpu:1", "account": "lab", "qos": "high", "constraint": "avx512",
               "nodelist": ["n1", "n2"], "sbatch_args": ["--exclusive", "--comment=x y"], "pending_timeout": 5}
    assert sbatch_options(section) == [
        "--partition=gpu", "--time=1:00:00", "--cpus-per-task=8", "--mem=16G", "--gpus=a100:2", "--gres=gpu:1",
        "--account=lab", "--qos=high", "--constraint=avx512", "--nodelist=n1,n2", "--exclusive", "--comment=x y"]
    assert sbatch_options({}) == []


@pytest.mark.parametrize("value, seconds", [(90, 90.0), ("90", 90.0), ("30s", 30.0), ("10m", 600.0), ("2h", 7200.0),
                                            (0, 0.0), ("1.5m", 90.0)])
def test_durations(value, seconds):
    assert parse_duration(value) == seconds


def test_pending_timeout_defaults_to_the_site_setting_then_an_hour(monkeypatch):
    monkeypatch.delenv("NBCORE_SLURM_PENDING_TIMEOUT", raising=False)
    assert pending_timeout({}) == 3600
    monkeypatch.setenv("NBCORE_SLURM_PENDING_TIMEOUT", "5m")
    assert pending_timeout({}) == 300 and pending_timeout({"pending_timeout": "7s"}) == 7
    with pytest.raises(BackendUnavailable, match="not a duration"):
        parse_duration("soon")


@pytest.mark.parametrize("section, complaint", [
    ({"cpus_per_task": 0}, "minimum"),
    ({"mem": "lots"}, r"slurm.mem: 'lots' is not valid here \(expected memory of the node: megabytes, or with a unit"),
    ({"partitions": "gpu"}, "partitions"),
    ({"pending_timeout": "forever"}, r"'forever' is not valid here \(expected how long the allocation may pend"),
    ({"sbatch_args": "--exclusive"}, "is not of type 'array'"),
])
def test_the_schema_refuses_what_slurm_would(section, complaint):
    config = {"environments": {"e": {"slurm": section}}}
    with pytest.raises(ConfigError, match=complaint):
        nbcore.open_backend("e", config=config)


def test_scontrol_fields_and_error_lines():
    line = ("JobId=12 JobName=nbcore-e UserId=root(0) JobState=PENDING Reason=Resources Dependency=(null) "
            "NodeList=(null) BatchHost=n2 Command=(null) WorkDir=/")
    info = fields(line)
    assert info["JobId"] == "12" and info["JobState"] == "PENDING" and info["Reason"] == "Resources"
    assert info["BatchHost"] == "n2"
    assert last_error("sbatch: error: Batch job submission failed: Invalid partition name specified\n") == \
        "Batch job submission failed: Invalid partition name specified"


def test_commands_run_without_the_variables_of_the_hosts_own_job():
    env = slurm_environment({"X": "1"}, base={"SLURM_JOB_ID": "3", "SLURM_NTASKS": "4", "SLURMD_NODENAME": "n1",
                                               "SLURM_CONF": "/etc/s.conf", "SBATCH_ACCOUNT": "lab", "PATH": "/bin"})
    assert env == {"SLURM_CONF": "/etc/s.conf", "SBATCH_ACCOUNT": "lab", "PATH": "/bin", "X": "1"}
