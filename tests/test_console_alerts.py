"""The shipped alert rules (ops/prometheus/alerts.yml) load in Debian's promtool, fire on the
series the hub exports (a promtool rule test: dead letters above the configured threshold, an
open circuit, a work queue older than the threshold), and name only metrics the hub exports."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from hub.settings import PROJECT_ROOT

RULES = PROJECT_ROOT / "ops" / "prometheus" / "alerts.yml"
PROMTOOL = shutil.which("promtool")
pytestmark = pytest.mark.skipif(PROMTOOL is None, reason="promtool missing: scripts/bootstrap.sh "
                                "installs Debian's prometheus package")

UNIT = """
rule_files: [{rules}]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'lienthong_dead_letters_last_hour'
        values: '3 12 12 12 12 12 12 12'
      - series: 'lienthong_alert_threshold{{alert="dead_letters_per_hour"}}'
        values: '10 10 10 10 10 10 10 10'
      - series: 'lienthong_circuit_state{{destination="npsp"}}'
        values: '0 2 2 2 2'
      - series: 'lienthong_queue_oldest_age_seconds{{queue="lt.npsp.p0",role="work"}}'
        values: '60 1200 1200 1200 1200 1200 1200 1200'
      - series: 'lienthong_alert_threshold{{alert="queue_age_seconds"}}'
        values: '900 900 900 900 900 900 900 900'
    alert_rule_test:
      - eval_time: 7m
        alertname: LienthongDeadLettersGrowing
        exp_alerts:
          - exp_labels: {{severity: warning}}
            exp_annotations:
              summary: "More dead letters in the last hour than alert_dead_letters_per_hour"
              description: "{description}"
      - eval_time: 4m
        alertname: LienthongCircuitOpen
        exp_alerts:
          - exp_labels: {{severity: warning, destination: npsp}}
            exp_annotations:
              summary: "The circuit to npsp is open"
              description: "Calls to npsp keep failing; its messages wait in the retry tiers."
      - eval_time: 1m
        alertname: LienthongCircuitOpen
        exp_alerts: []
      - eval_time: 7m
        alertname: LienthongWorkQueueOld
        exp_alerts:
          - exp_labels: {{severity: warning, queue: lt.npsp.p0}}
            exp_annotations:
              summary: "The oldest message of lt.npsp.p0 is older than alert_queue_age_minutes"
              description: "It has waited 20m 0s; is its destination slow, or its worker stuck?"
"""


def test_the_rules_load_in_promtool() -> None:
    assert PROMTOOL is not None
    done = subprocess.run([PROMTOOL, "check", "rules", str(RULES)], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 8 rules found" in done.stdout


def test_the_rules_fire_on_the_hubs_series(tmp_path: Path) -> None:
    assert PROMTOOL is not None
    unit = tmp_path / "unit.yml"
    description = ("12 messages were parked in the last hour. Open the operator console "
                   "(/console) to see why, then replay, edit or discard them.\\n")
    unit.write_text(UNIT.format(rules=RULES, description=description))
    done = subprocess.run([PROMTOOL, "test", "rules", str(unit)], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_rules_name_only_metrics_the_hub_exports() -> None:
    named = set(re.findall(r"\b(lienthong_[a-z_]+)", RULES.read_text()))
    source = "\n".join(p.read_text() for p in (PROJECT_ROOT / "hub").rglob("*.py"))
    missing = {m for m in named if f'"{m}"' not in source}
    assert named and not missing, missing
