"""schedules.yaml and audiences.yaml: the shipped schedules load; every kind of mistake is refused
at load time with a message naming the file, the job (or audience) and the field."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from analytics_lib.cli import main
from analytics_lib.config import PROJECT_ROOT
from analytics_lib.scheduling.config import ScheduleConfigError, load_config, parse_duration
from tests.test_scheduling_support import settings_for, write_config

SHIPPED = PROJECT_ROOT / "scheduling"


@pytest.fixture
def settings(tmp_path):
    return settings_for(tmp_path)


def test_the_shipped_schedules_load_with_the_platforms_jobs(settings):
    config = load_config(SHIPPED / "schedules.yaml", SHIPPED / "audiences.yaml", settings)
    jobs = config.jobs
    expected = {
        "daily_operations": ("daily_operations", "0 8 * * *", ["operations_team"]),
        "weekly_business": ("weekly_business", "0 9 * * 1", ["management_team"]),
        "monthly_executive": ("monthly_executive", "0 10 1 * *", ["executives"]),
        "quarterly_board": ("quarterly_board", "0 10 1 1,4,7,10 *", ["board_members"]),
    }
    for name, (report, cron, audience) in expected.items():
        job = jobs[name]
        assert (job.kind, job.report, job.cron, job.audience, job.timezone) == ("report", report, cron, audience,
                                                                                "Europe/Istanbul")
        assert job.on_failure, f"{name} has no failure contacts"
    assert jobs["monthly_executive"].values == {"level": "c_level"}
    kinds = {job.kind for job in jobs.values()}
    assert {"ingest", "maintain", "retrain"} <= kinds
    assert jobs["weekly_model_retraining"].cron == "0 5 * * 0"


def test_shipped_audiences_are_examples_and_no_secret_is_in_the_files():
    audiences = yaml.safe_load((SHIPPED / "audiences.yaml").read_text())["audiences"]
    addresses = re.findall(r"[\w.+-]+@[\w.-]+", (SHIPPED / "audiences.yaml").read_text())
    assert addresses and all(a.endswith("@example.com") for a in addresses)
    assert {"operations_team", "management_team", "executives", "board_members"} <= set(audiences)
    for path in SHIPPED.glob("*.yaml"):
        text = path.read_text().lower()
        assert "password:" not in text and "smtp_password" not in text
    assert not (SHIPPED / ".gitkeep").exists()


GOOD_JOB = """
weekly:
  notebook: weekly_business
  cron: "0 9 * * 1"
  audience: management_team
"""


@pytest.mark.parametrize("jobs, message", [
    (GOOD_JOB.replace("weekly_business", "weekly_busines"),
     "job 'weekly', field 'notebook': unknown notebook 'weekly_busines'"),
    (GOOD_JOB.replace("weekly_business", "notebooks/other/weekly_business.ipynb"),
     "job 'weekly', field 'notebook': 'notebooks/other/weekly_business.ipynb' is not a notebook in notebooks/reports/"),
    (GOOD_JOB.replace('"0 9 * * 1"', '"0 9 * * MON-"'), "job 'weekly', field 'cron': '0 9 * * MON-' is not a valid"),
    (GOOD_JOB.replace('"0 9 * * 1"', '"0 0 9 * * 1"'), "job 'weekly', field 'cron': '0 0 9 * * 1' has 6 field(s)"),
    (GOOD_JOB.replace('"0 9 * * 1"', '"0 25 * * *"'), "job 'weekly', field 'cron'"),
    (GOOD_JOB.replace('"0 9 * * 1"', '"0 9 31 2 *"'), "job 'weekly', field 'cron': '0 9 31 2 *' never fires"),
    (GOOD_JOB.replace('"0 9 * * 1"', '"@reboot"'), "job 'weekly', field 'cron': '@reboot' is not a cron nickname"),
    (GOOD_JOB.replace("management_team", "managment_team"),
     "job 'weekly', field 'audience': unknown audience 'managment_team'; audiences: management_team, oncall"),
    (GOOD_JOB + "  on_failure: [nobody]\n", "job 'weekly', field 'on_failure': unknown audience 'nobody'"),
    (GOOD_JOB + "  cronn: x\n", "job 'weekly', field 'cronn': unknown field"),
    (GOOD_JOB.replace('  cron: "0 9 * * 1"\n', ""), "job 'weekly', field 'cron': missing (required)"),
    (GOOD_JOB + "  timezone: Europe/Istambul\n",
     "job 'weekly', field 'timezone': 'Europe/Istambul' is not an IANA time zone"),
    (GOOD_JOB + "  values: {bogus: 1}\n", "job 'weekly', field 'values': unknown parameter 'bogus' of report weekly_business"),
    (GOOD_JOB + "  values: {period: 12}\n", "job 'weekly', field 'values'"),
    (GOOD_JOB + "  parameters: parameters/weekly_business/nope.yaml\n",
     "job 'weekly', field 'parameters': parameters file not found: parameters/weekly_business/nope.yaml"),
    (GOOD_JOB + "  formats: [html, docx]\n", "job 'weekly', field 'formats': unknown output format 'docx'"),
    (GOOD_JOB + "  retries: -1\n", "job 'weekly', field 'retries'"),
    (GOOD_JOB + "  timeout: soon\n", "job 'weekly', field 'timeout': 'soon' is not a duration"),
    (GOOD_JOB + "  timeout: 0\n", "job 'weekly', field 'timeout': must be more than 0 seconds"),
    (GOOD_JOB + "  builtin: maintain\n", "job 'weekly', field 'notebook': give either 'notebook'"),
    ("nightly:\n  builtin: defrag\n  cron: '0 3 * * *'\n", "job 'nightly', field 'builtin': unknown built-in job 'defrag'"),
    ("nightly:\n  builtin: maintain\n  options: {bogus: 1}\n  cron: '0 3 * * *'\n",
     "job 'nightly', field 'options.bogus': unknown field"),
    ("retrain:\n  builtin: retrain\n  options: {models: [churn, crystal_ball]}\n  cron: '0 5 * * 0'\n",
     "job 'retrain', field 'options.models.1': unknown model 'crystal_ball'"),
    ("load:\n  builtin: ingest\n  options: {inbox: inbox, source: fax}\n  cron: '0 1 * * *'\n",
     "job 'load', field 'options.source': unknown source 'fax'"),
    ("load:\n  builtin: ingest\n  cron: '0 1 * * *'\n", "job 'load', field 'options.inbox': Field required"),
    ("compact:\n  builtin: maintain\n  cron: '0 3 * * *'\n  audience: management_team\n",
     "job 'compact', field 'audience': only notebook (report) jobs take 'audience'"),
    ("Weekly Report:\n  notebook: weekly_business\n  cron: '0 9 * * 1'\n",
     "job 'Weekly Report': job names use lower-case letters"),
])
def test_a_bad_job_is_refused_naming_job_and_field(tmp_path, settings, jobs, message):
    schedules, audiences = write_config(tmp_path, jobs)
    with pytest.raises(ScheduleConfigError) as info:
        load_config(schedules, audiences, settings)
    assert message in str(info.value)
    assert str(info.value).startswith("scheduling/schedules.yaml: ") or str(schedules) in str(info.value)


def test_every_problem_is_listed_not_only_the_first(tmp_path, settings):
    jobs = GOOD_JOB + "  cronn: 1\nother:\n  notebook: nope\n  cron: '0 8 * * *'\n"
    schedules, audiences = write_config(tmp_path, jobs)
    with pytest.raises(ScheduleConfigError) as info:
        load_config(schedules, audiences, settings)
    assert len(info.value.errors) == 2
    assert "job 'weekly', field 'cronn'" in info.value.errors[0] and "job 'other', field 'notebook'" in info.value.errors[1]


@pytest.mark.parametrize("text, message", [
    ("jobs:\n  weekly: [\n", "invalid YAML at line 3"),
    ("jobs:\n  weekly:\n    notebook: weekly_business\n   cron: x\n", "invalid YAML at line"),
    ("jobs:\n  weekly: {notebook: weekly_business, cron: '0 9 * * 1'}\n  weekly: {notebook: daily_operations, "
     "cron: '0 8 * * *'}\n", "duplicate key 'weekly' (first at line 2)"),
    ("- just\n- a list\n", "expected a mapping with 'jobs'"),
    ("jobz: {}\n", "unknown top-level field(s) 'jobz'"),
    ("jobs: {}\n", "'jobs' must be a mapping of job name to job"),
    ("defaults: {retries: many}\njobs:\n  w: {notebook: weekly_business, cron: '0 9 * * 1'}\n",
     "defaults, field 'retries'"),
])
def test_invalid_yaml_and_structure_are_refused_with_a_location(tmp_path, settings, text, message):
    schedules, audiences = write_config(tmp_path, GOOD_JOB)
    schedules.write_text(text)
    with pytest.raises(ScheduleConfigError, match=re.escape(message)):
        load_config(schedules, audiences, settings)


@pytest.mark.parametrize("audiences, message", [
    ("audiences:\n  management_team:\n    email: [boss@example.com, not-an-address]\n",
     "audience 'management_team', field 'email.to.1': Value error, 'not-an-address' is not an e-mail address"),
    ("audiences:\n  management_team:\n    slack: '#general'\n",
     "audience 'management_team', field 'slack': unknown distribution target; targets: email, folder"),
    ("audiences:\n  management_team:\n    description: nobody\n", "audience 'management_team': no targets"),
    ("audiences:\n  management_team:\n    email: {to: [a@example.com], attach: [docx]}\n",
     "audience 'management_team', field 'email.attach.0'"),
    ("audiences:\n  management_team:\n    email: {to: []}\n", "audience 'management_team', field 'email.to'"),
    ("audiences:\n  management_team:\n    email: [a@example.com]\n  management_team:\n    email: [b@example.com]\n",
     "duplicate key 'management_team'"),
    ("audiences:\n  management_team: [a@example.com]\n", "audience 'management_team': expected a mapping of targets"),
])
def test_bad_audiences_are_refused_naming_audience_and_field(tmp_path, settings, audiences, message):
    schedules, audience_file = write_config(tmp_path, GOOD_JOB, audiences=audiences)
    with pytest.raises(ScheduleConfigError) as info:
        load_config(schedules, audience_file, settings)
    assert message.replace("Value error, ", "") in str(info.value)
    assert "audiences.yaml" in str(info.value)


def test_defaults_apply_unless_a_job_overrides_them(tmp_path, settings):
    jobs = GOOD_JOB + textwrap.dedent("""
    compact:
      builtin: maintain
      cron: "0 3 * * *"
      retries: 0
      timezone: UTC
    """)
    schedules, audiences = write_config(tmp_path, jobs, defaults="timezone: Europe/Istanbul\nretries: 4\n"
                                                             "retry_backoff: 90s\ntimeout: 45m\n"
                                                             "formats: [html, pdf]\non_failure: oncall")
    config = load_config(schedules, audiences, settings)
    weekly, compact = config.jobs["weekly"], config.jobs["compact"]
    assert (weekly.retries, weekly.retry_backoff, weekly.timeout, weekly.timezone) == (4, 90, 2700, "Europe/Istanbul")
    assert weekly.formats == ["html", "pdf"] and weekly.on_failure == ["oncall"]
    assert (compact.retries, compact.timezone, compact.formats) == (0, "UTC", None)


def test_durations():
    assert [parse_duration(v) for v in (90, "90", "90s", "45m", "2h", "1d", "1.5h")] == [90, 90, 90, 2700, 7200,
                                                                                         86400, 5400]
    for bad in ("soon", "-5", True, "5 weeks"):
        with pytest.raises(ValueError):
            parse_duration(bad)


def test_cli_reports_a_bad_schedule_in_one_line(tmp_path):
    schedules, audiences = write_config(tmp_path, GOOD_JOB.replace('"0 9 * * 1"', '"0 9 * * 8"'))
    for command in (["list"], ["run-due"], ["crontab"], ["serve"]):
        result = CliRunner().invoke(main, ["schedule", "--schedules", str(schedules), "--audiences", str(audiences),
                                           *command], env={"PAYMENT_ANALYTICS_OUTPUTS": str(tmp_path / "outputs")})
        assert result.exit_code == 1, result.output
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and "job 'weekly', field 'cron'" in lines[0], result.output
        assert "Traceback" not in result.output


def test_cli_reports_bad_options_in_one_line(tmp_path):
    schedules, audiences = write_config(tmp_path, GOOD_JOB)
    env = {"PAYMENT_ANALYTICS_OUTPUTS": str(tmp_path / "outputs")}
    base = ["schedule", "--schedules", str(schedules), "--audiences", str(audiences)]
    result = CliRunner().invoke(main, [*base, "run-due", "--now", "next monday"], env=env)
    assert result.exit_code == 2 and "'next monday' is not an ISO-8601 time" in result.output
    result = CliRunner().invoke(main, [*base, "run-due", "--job", "nope"], env=env)
    assert result.exit_code == 1 and "no job 'nope'; jobs: weekly" in result.output
    result = CliRunner().invoke(main, ["schedule", "--schedules", str(Path(tmp_path) / "missing.yaml"), "list"], env=env)
    assert result.exit_code == 1 and "missing.yaml: file not found" in result.output
