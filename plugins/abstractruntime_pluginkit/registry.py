"""``WorkflowRegistry``: workflow specs by id (reference API). Effects that start or wake other runs
(START_SUBWORKFLOW, EMIT_EVENT) find workflow specs here through ``Runtime.workflow_registry``."""

from __future__ import annotations

from typing import Dict, Iterator, List, Optional

from abstractruntime.errors import NotFoundError, ValidationError
from abstractruntime.models import WorkflowSpec


class WorkflowRegistry:
    def __init__(self) -> None:
        self._specs: Dict[str, WorkflowSpec] = {}

    def register(self, spec: WorkflowSpec) -> None:
        if spec.workflow_id in self._specs:
            raise ValidationError(f"Workflow '{spec.workflow_id}' is already registered. "
                                  f"Use unregister() first if you want to replace it.")
        self._specs[spec.workflow_id] = spec

    def unregister(self, workflow_id: str) -> None:
        if workflow_id not in self._specs:
            raise NotFoundError(f"Workflow '{workflow_id}' is not registered.")
        del self._specs[workflow_id]

    def get(self, workflow_id: str) -> Optional[WorkflowSpec]:
        return self._specs.get(workflow_id)

    def get_or_raise(self, workflow_id: str) -> WorkflowSpec:
        """The spec registered under ``workflow_id``; ``KeyError`` (worded as the reference's) if there is none."""
        spec = self._specs.get(workflow_id)
        if spec is None:
            raise NotFoundError(f"Workflow '{workflow_id}' is not registered. Register it with "
                                f"registry.register(workflow) before starting the scheduler.")
        return spec

    def list_ids(self) -> List[str]:
        return list(self._specs)

    def __len__(self) -> int:
        return len(self._specs)

    def __contains__(self, workflow_id: object) -> bool:
        return workflow_id in self._specs

    def __iter__(self) -> Iterator[str]:
        return iter(self._specs)


__all__ = ["WorkflowRegistry"]
