"""Sensors: they decide, through the domain's trigger decisions, which stage runs start and with which key.

`github.py` holds the two GitHub sensors (webhook drain and polling); `intake.py` the plain-Python path they share
(what to read, then acting on decisions), `decide.py` the deciding (no side effect; explain uses it too),
`history.py` what deciding may read of the platform's memory, `cursor.py` how far GitHub was read;
`run_status.py` reports stage runs that end outside their ops.
"""

import dagster as dg


def all_sensors() -> list[dg.SensorDefinition]:
    from .docs import docs_index_sensor
    from .github import github_issue_labels_sensor, github_pull_requests_sensor
    from .run_status import stage_run_canceled_sensor, stage_run_failure_sensor

    return [
        github_issue_labels_sensor,
        github_pull_requests_sensor,
        stage_run_failure_sensor,
        stage_run_canceled_sensor,
        docs_index_sensor,
    ]
