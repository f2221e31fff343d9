"""The one fragment walker: every fragment measured once per context, cycles and unknown
fragments counted empty, SKIP leaving a fragment out."""

from __future__ import annotations

from graphql import DocumentNode, FieldNode, OperationDefinitionNode, parse

from resolvers.execution.fragments import SKIP, SelectionWalk


def _operation(document: str) -> tuple[DocumentNode, OperationDefinitionNode]:
    doc = parse(document)
    [operation] = [d for d in doc.definitions if isinstance(d, OperationDefinitionNode)]
    return doc, operation


def _counting_walk(doc: DocumentNode, calls: list[str]) -> SelectionWalk[None, int]:
    def field(node: FieldNode, _: None) -> int:
        calls.append(node.name.value)
        return 1 + (walk.selections(node.selection_set, None) if node.selection_set else 0)

    walk: SelectionWalk[None, int] = SelectionWalk(
        doc, field=field, combine=sum, empty=0)
    return walk


def test_a_fan_out_counts_every_spread_but_walks_each_fragment_once() -> None:
    levels = 30
    doc, operation = _operation("{ ...F0 } " + " ".join(
        f"fragment F{i} on Query {{ ...F{i + 1} ...F{i + 1} }}" for i in range(levels)
    ) + f" fragment F{levels} on Query {{ a b }}")
    calls: list[str] = []
    assert _counting_walk(doc, calls).selections(operation.selection_set, None) == 2 * 2**levels
    assert calls == ["a", "b"]


def test_cycles_and_unknown_fragments_count_empty() -> None:
    doc, operation = _operation(
        "{ x ...A ...Missing } fragment A on Query { y ...B } fragment B on Query { ...A }")
    assert _counting_walk(doc, []).selections(operation.selection_set, None) == 2


def test_inline_fragments_take_their_context_and_skip_leaves_them_out() -> None:
    doc, operation = _operation("{ a ... on T { b } ... on U { c } ...F } fragment F on U { d }")
    walk: SelectionWalk[str, list[str]] = SelectionWalk(
        doc,
        field=lambda node, where: [f"{where}.{node.name.value}"],
        combine=lambda values: [name for value in values for name in value], empty=[],
        inline=lambda node, where: SKIP if node.type_condition.name.value == "U"
        else node.type_condition.name.value,
        spread=lambda definition, where: definition.type_condition.name.value)
    assert walk.selections(operation.selection_set, "Query") == ["Query.a", "T.b", "U.d"]
