"""One partition per watched repository, shared by every periodic asset.

`docs_index_sensor` keeps the set in step with `codexk8s.yaml` (partition keys are the repositories' readable
names, lowercase: `owner/name`, or a local checkout's directory name such as `main`; see
`config/repository_keys.py`); every periodic schedule fans out over the same keys.
"""

from collections.abc import Sequence

import dagster as dg

PARTITIONS_NAME = "repositories"
REPOSITORY_PARTITIONS = dg.DynamicPartitionsDefinition(name=PARTITIONS_NAME)


def repository_keys(instance: dg.DagsterInstance) -> list[str]:
    return sorted(instance.get_dynamic_partitions(PARTITIONS_NAME))


SHOWN_REASONS = 3


def first_reasons(reasons: Sequence[str], shown: int = SHOWN_REASONS) -> str:
    """One reason per repository as a skip reason: the first `shown`, then how many more. A tick's skip reason is
    one line of the UI's tick history; with 300 watched repositories one clause each made it 300 clauses long."""
    listed = "; ".join(reasons[:shown])
    more = len(reasons) - shown
    return listed if more <= 0 else f"{listed}; … and {more} more of {len(reasons)}"
