"""Registers the nightly's deadline reference with Airflow (`plugins/deadline_reference.py`).

Airflow loads each file of the plugins folder as a top-level module (this one as
`deadline_plugin`), while the DAGs import the reference as `plugins.deadline_reference`, the
class path their serialized deadline names; the plugin registers that same class, so a run's
deadline resolves to it wherever the run is created.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from plugins.deadline_reference import ScheduledRunLogicalDate


class PipelineDeadlinesPlugin(AirflowPlugin):
    name = "pipeline_deadlines"
    deadline_references = [ScheduledRunLogicalDate]
