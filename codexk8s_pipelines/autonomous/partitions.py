"""One partition per watched repository, shared by every periodic asset.

`docs_index_sensor` keeps the set in step with `codexk8s.yaml` (partition keys are the repositories' readable
names, lowercase: `owner/name`, or a local checkout's directory name such as `main`; see
`config/repository_keys.py`); every periodic schedule fans out over the same keys.
"""

import dagster as dg

PARTITIONS_NAME = "repositories"
REPOSITORY_PARTITIONS = dg.DynamicPartitionsDefinition(name=PARTITIONS_NAME)


def repository_keys(instance: dg.DagsterInstance) -> list[str]:
    return sorted(instance.get_dynamic_partitions(PARTITIONS_NAME))
