"""``abstractruntime.functional``: durable functions (``@workflow``, ``@step``), from the ``functional`` plugin
(docs/functional.md). Not a 0.4.2 path: served by this overlay so hosts import it from the ``abstractruntime``
namespace like the rest."""

from abstractruntime_functional import (AsyncNotSupportedError, ChildWorkflowError, FunctionalContext, FunctionNode,
                                        NonDeterminismError, NotInStepError, StepDefinition, StepInfo,
                                        StepNotFoundError, WorkflowBodyError, WorkflowInputError, current_step,
                                        function_of, recorded_results, registered_steps, step, workflow)

__all__ = ["workflow", "step", "current_step", "StepInfo", "StepDefinition", "registered_steps", "FunctionNode",
           "function_of", "FunctionalContext", "recorded_results", "NonDeterminismError", "WorkflowBodyError",
           "WorkflowInputError", "ChildWorkflowError", "StepNotFoundError", "NotInStepError", "AsyncNotSupportedError"]
