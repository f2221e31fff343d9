"""The executor of a planning schema: ``PlannedExecutionContext`` (queries) whose variables
are built with ``resolvers.execution.reading_variables`` (the ``ingestTelemetry``
readings coerced in one loop, everything else by graphql-core)."""

from __future__ import annotations

from typing import Any

from graphql import DocumentNode, GraphQLError, GraphQLSchema, OperationDefinitionNode

from resolvers.execution.planned import PlannedExecutionContext
from resolvers.execution.reading_variables import fast_readings, with_readings, without_readings


def _operation(document: DocumentNode, name: str | None) -> OperationDefinitionNode | None:
    """The operation graphql-core will pick, or None where it reports an error."""
    found = None
    for definition in document.definitions:
        if isinstance(definition, OperationDefinitionNode):
            if name is None:
                if found is not None:
                    return None
                found = definition
            elif definition.name and definition.name.value == name:
                found = definition
    return found


class PlannedWritesExecutionContext(PlannedExecutionContext):
    @classmethod
    def build(cls, schema: GraphQLSchema, document: DocumentNode, root_value: Any = None,
              context_value: Any = None, raw_variable_values: dict[str, Any] | None = None,
              operation_name: str | None = None, *args: Any, **kwargs: Any
              ) -> list[GraphQLError] | Any:
        operation = _operation(document, operation_name)
        readings = (fast_readings(schema, operation.variable_definitions or (),
                                  raw_variable_values) if operation else None)
        if readings is None:
            return super().build(schema, document, root_value, context_value,
                                 raw_variable_values, operation_name, *args, **kwargs)
        assert raw_variable_values is not None
        # graphql-core coerces the other variables (and checks the readings variables'
        # definitions) with each readings variable given as an empty list.
        executor = super().build(schema, document, root_value, context_value,
                                 without_readings(raw_variable_values, readings),
                                 operation_name, *args, **kwargs)
        if isinstance(executor, list):
            return executor
        variables = with_readings(executor.variable_values, raw_variable_values, readings)
        assert not isinstance(variables, list)
        executor.variable_values = variables
        return executor
