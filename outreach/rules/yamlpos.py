"""YAML loading that remembers where every value came from.

``load_with_positions(text)`` returns the plain Python data plus a map from a
path (a tuple of keys and list indexes) to its (line, column), 1-based, so a
validation error on ``("segment", "all", 2, "field")`` can point at the line.
"""

from __future__ import annotations

from typing import Any

import yaml

Path_ = tuple[str | int, ...]
Positions = dict[Path_, tuple[int, int]]


class DuplicateKey(Exception):
    def __init__(self, key: str, line: int, column: int) -> None:
        super().__init__(f"duplicate key '{key}'")
        self.key, self.line, self.column = key, line, column


def _mark(node: yaml.Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


def _convert(node: yaml.Node, path: Path_, positions: Positions) -> Any:
    loader = yaml.SafeLoader("")
    if isinstance(node, yaml.MappingNode):
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if key in result:
                raise DuplicateKey(str(key), *_mark(key_node))
            positions[(*path, key)] = _mark(key_node)
            result[key] = _convert(value_node, (*path, key), positions)
        return result
    if isinstance(node, yaml.SequenceNode):
        items = []
        for index, item in enumerate(node.value):
            positions[(*path, index)] = _mark(item)
            items.append(_convert(item, (*path, index), positions))
        return items
    return loader.construct_object(node, deep=True)


def load_with_positions(text: str) -> tuple[Any, Positions]:
    """Parse one YAML document; raise ``yaml.YAMLError`` or ``DuplicateKey``."""
    node = yaml.compose(text, Loader=yaml.SafeLoader)
    positions: Positions = {}
    if node is None:
        return None, positions
    positions[()] = _mark(node)
    return _convert(node, (), positions), positions


def position_of(positions: Positions, path: Path_) -> tuple[int, int] | None:
    """The position of ``path`` or of its nearest ancestor that has one."""
    for end in range(len(path), -1, -1):
        found = positions.get(tuple(path[:end]))
        if found:
            return found
    return None
