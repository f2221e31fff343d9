"""How operations execute: limits and cost checked before, extensions around, and the
planned executor (plans per document, run level by level) beside graphql-core's."""
