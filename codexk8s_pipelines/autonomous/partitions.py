"""One partition per watched repository, shared by every periodic asset.

`docs_index_sensor` keeps the set in step with `codexk8s.yaml` (partition keys are `owner/name`, lowercase, or
`local:<path>`); every periodic schedule fans out over the same keys.
"""

import dagster as dg

PARTITIONS_NAME = "repositories"
REPOSITORY_PARTITIONS = dg.DynamicPartitionsDefinition(name=PARTITIONS_NAME)


def repository_keys(instance: dg.DagsterInstance) -> list[str]:
    return sorted(instance.get_dynamic_partitions(PARTITIONS_NAME))
