"""``WorkflowRegistry``: workflow specs by id (reference API), and by version. Effects that start or wake other runs
(START_SUBWORKFLOW, EMIT_EVENT), the scheduler and workers find workflow specs here through
``Runtime.workflow_registry``.

Several versions of one workflow id may be registered (``WorkflowSpec.version``). ``get(workflow_id)`` gives the one
registered last (new runs start on it); ``get(workflow_id, version)`` and :meth:`for_run` give the version a run
started with -- a run is never driven by other code (docs/workflow-versions.md)."""

from __future__ import annotations

from typing import Any, Dict, Iterator, List, Optional

from abstractruntime.errors import NotFoundError, ValidationError
from abstractruntime.models import WorkflowSpec


class WorkflowVersionNotFoundError(NotFoundError):
    """The version of a workflow a run started with is not registered (the run is left as it is)."""


class WorkflowRegistry:
    def __init__(self) -> None:
        self._specs: Dict[str, Dict[Optional[str], WorkflowSpec]] = {}

    def register(self, spec: WorkflowSpec) -> None:
        versions = self._specs.get(spec.workflow_id, {})
        if spec.version in versions:
            what = f"Workflow '{spec.workflow_id}'" + (f" version {spec.version!r}" if spec.version is not None else "")
            raise ValidationError(f"{what} is already registered. Use unregister() first if you want to replace it."
                                  + ("" if spec.version is None else " New code goes under another version."))
        versions[spec.version] = spec  # insertion order: the last registered is the latest
        self._specs[spec.workflow_id] = versions

    def unregister(self, workflow_id: str, version: Any = ...) -> None:
        """Remove every version of ``workflow_id``, or only ``version``."""
        versions = self._specs.get(workflow_id)
        if not versions or (version is not ... and version not in versions):
            raise NotFoundError(f"Workflow '{workflow_id}'" + ("" if version is ... else f" version {version!r}")
                                + " is not registered.")
        if version is ...:
            del self._specs[workflow_id]
            return
        del versions[version]
        if not versions:
            del self._specs[workflow_id]

    def get(self, workflow_id: str, version: Any = ...) -> Optional[WorkflowSpec]:
        """The latest registered version of ``workflow_id``, or exactly ``version`` (None: the unversioned spec)."""
        versions = self._specs.get(workflow_id)
        if not versions:
            return None
        if version is ...:
            return next(reversed(versions.values()))
        return versions.get(version)

    def for_run(self, run: Any) -> Optional[WorkflowSpec]:
        """The spec that may drive ``run``: the version it started with (any version for a run that recorded none,
        e.g. one started before versions existed)."""
        version = getattr(run, "workflow_version", None)
        return self.get(run.workflow_id) if version is None else self.get(run.workflow_id, version)

    def get_or_raise(self, workflow_id: str, version: Any = ...) -> WorkflowSpec:
        """As :meth:`get`; ``NotFoundError`` (worded as the reference's) if there is none, and
        :class:`WorkflowVersionNotFoundError` naming the registered versions if only ``version`` is missing."""
        spec = self.get(workflow_id) if version is ... else self.get(workflow_id, version)
        if spec is not None:
            return spec
        if workflow_id in self._specs and version is not ...:
            have = ", ".join(repr(v) for v in self._specs[workflow_id])
            raise WorkflowVersionNotFoundError(
                f"Workflow '{workflow_id}' version {version!r} is not registered (registered: {have}); a run that "
                f"started with it is left as it is: register that version to continue it")
        raise NotFoundError(f"Workflow '{workflow_id}' is not registered. Register it with "
                            f"registry.register(workflow) before starting the scheduler.")

    def get_for_run(self, run: Any) -> WorkflowSpec:
        """:meth:`for_run`, raising as :meth:`get_or_raise` does."""
        version = getattr(run, "workflow_version", None)
        return self.get_or_raise(run.workflow_id) if version is None else self.get_or_raise(run.workflow_id, version)

    def versions(self, workflow_id: str) -> List[Optional[str]]:
        return list(self._specs.get(workflow_id, {}))

    def list_ids(self) -> List[str]:
        return list(self._specs)

    def __len__(self) -> int:
        return len(self._specs)

    def __contains__(self, workflow_id: object) -> bool:
        return workflow_id in self._specs

    def __iter__(self) -> Iterator[str]:
        return iter(self._specs)


def spec_for_run(registry: Any, run: Any, *, required: bool = True) -> Optional[WorkflowSpec]:
    """The spec of ``registry`` that may drive ``run`` (its own version); a host's own registry object with only
    ``get(workflow_id)`` (the 0.4.2 protocol) is asked by id. ``required``: raise instead of returning None."""
    if isinstance(registry, WorkflowRegistry):
        return registry.get_for_run(run) if required else registry.for_run(run)
    spec = registry.get(run.workflow_id) if registry is not None else None
    if spec is None and required:
        raise NotFoundError(f"Workflow '{run.workflow_id}' is not registered. Register it with "
                            f"registry.register(workflow) before starting the scheduler.")
    return spec


__all__ = ["WorkflowRegistry", "WorkflowVersionNotFoundError", "spec_for_run"]
