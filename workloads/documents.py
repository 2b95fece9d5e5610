"""One reader for every JSON or YAML file a user hands moesim: scenarios, sweep specs, traces, profiles, traffic
matrices, routing samples, journals, saved results.

A document is refused in one line naming the file and the place before anything downstream sees it:

- bytes that are not UTF-8: the file and the byte offset of the first bad byte;
- more than :data:`MAX_DEPTH` levels of nesting (Python's own parsers would otherwise hit their recursion limit);
- YAML aliases that expand a small file into a huge (or endless, self-referential) one;
- a key given twice in one mapping (YAML ``pp: 2`` then ``pp: 4``, or a JSON object): the name and, for YAML, both
  lines; the last one would otherwise win silently;
- a number that is not finite (``NaN``, ``Infinity``, ``.inf``, ``1e400``) or an integer beyond 64 bits, with the
  field's path (``traceEvents[12].dur``).

Field-specific ranges (a duration of 1e300 µs) and types are the reader of each kind of document's business; it
gets plain, finite, bounded data to check.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from moesim.workloads.errors import ScenarioError
from moesim.workloads.files import check_input

MAX_DEPTH = 100  # no moesim document nests deeper than ~6 levels; Python's parsers recurse ~1000 levels at most
MAX_INT = 2**63 - 1  # integers beyond int64 are typos (or attacks), and overflow numpy and float arithmetic
ALIAS_GROWTH = 10  # a YAML document may expand through aliases to 10× its size in characters (+ the floor below)
ALIAS_FLOOR = 100_000


def read_document(path: str | Path, what: str, max_bytes: float, fmt: str | None = None, hint: str = "",
                  error: type[ScenarioError] = ScenarioError) -> Any:
    """The checked contents of the JSON or YAML file ``path`` (``fmt`` ``"json"`` or ``"yaml"``; by default JSON
    for a ``.json`` file, else YAML); ``what``, ``max_bytes`` and ``hint`` as for :func:`check_input`."""
    path = check_input(path, max_bytes, what, hint, error)
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise error(f"{what} {str(path)!r}: cannot read: {err.strerror or err}") from None
    return parse_document(raw, str(path), fmt or ("json" if path.suffix == ".json" else "yaml"), error)


def parse_document(raw: bytes | str, source: str, fmt: str = "json",
                   error: type[ScenarioError] = ScenarioError) -> Any:
    """Parse and check one JSON or YAML document (bytes must be UTF-8); ``source`` names it in errors."""
    text = decode(raw, source, error) if isinstance(raw, bytes) else raw
    data = _json(text, source, error) if fmt == "json" else _yaml(text, source, error)
    check_values(data, source, error, max_nodes=ALIAS_GROWTH * len(text) + ALIAS_FLOOR)
    return data


def decode(raw: bytes, source: str, error: type[ScenarioError] = ScenarioError,
           fix: str = "save the file as UTF-8") -> str:
    """UTF-8 text (a leading byte-order mark dropped), or an error naming the first bad byte, its offset and
    ``fix``."""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise error(f"{source}: not UTF-8 text: byte 0x{raw[err.start]:02x} at offset {err.start:,} "
                    f"({err.reason}); {fix}") from None


def _unique(pairs: list[tuple[str, Any]]) -> dict:
    data = dict(pairs)
    if len(data) != len(pairs):
        seen = set()
        for key, _ in pairs:
            if key in seen:
                raise _Refused(f"duplicate key {key!r} in one object; keep one of them")
            seen.add(key)
    return data


class _Refused(Exception):
    """A document refused while parsing; the message lacks only the file name."""


def _json(text: str, source: str, error: type[ScenarioError]) -> Any:
    try:
        return json.loads(text, object_pairs_hook=_unique)
    except _Refused as refused:
        raise error(f"{source}: {refused.args[0]}") from None
    except json.JSONDecodeError as err:
        raise error(f"{source}: malformed JSON at line {err.lineno} column {err.colno}: {err.msg}") from None
    except RecursionError:
        raise error(f"{source}: nested more than {MAX_DEPTH} levels deep; no moesim file needs that") from None
    except ValueError:  # Python refuses to convert an integer of more than 4,300 digits
        raise error(f"{source}: an integer of more than 4,300 digits, out of range (the limit is 2^63); give a "
                    "smaller value") from None


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, with a depth limit while composing and duplicate keys refused."""

    depth = 0

    def compose_node(self, parent, index):
        self.depth += 1
        if self.depth > MAX_DEPTH:
            mark = self.peek_event().start_mark
            raise _Refused(f"nested more than {MAX_DEPTH} levels deep (line {mark.line + 1}); "
                                 "no moesim file needs that")
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            first: dict = {}
            for key_node, _ in node.value:
                if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node)
                if key in first:
                    raise _Refused(f"duplicate key {key!r} at line {key_node.start_mark.line + 1} (first at line "
                                     f"{first[key] + 1}); keep one of them")
                first[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep)


def _yaml(text: str, source: str, error: type[ScenarioError]) -> Any:
    loader = None
    try:
        loader = _Loader(text)  # reading starts here: a control character is refused at once
        return loader.get_single_data()
    except _Refused as refused:
        raise error(f"{source}: {refused.args[0]}") from None
    except yaml.YAMLError as err:
        where = ' '.join(str(err).replace('in "<unicode string>", ', "").split())
        raise error(f"{source}: malformed YAML: {where[:200]}") from None
    except RecursionError:  # a constructor recursing through a self-referential alias
        raise error(f"{source}: nested more than {MAX_DEPTH} levels deep; no moesim file needs that") from None
    except (TypeError, ValueError) as err:  # e.g. an unhashable key, a timestamp out of range
        raise error(f"{source}: malformed YAML: {' '.join(str(err).split())[:200]}") from None
    finally:
        if loader is not None:
            loader.dispose()


def field_path(crumb, key=None) -> str:
    """``traceEvents[3].args.grid`` from the breadcrumbs :func:`check_values` keeps (``(parent, key)`` pairs)."""
    keys = [] if key is None else [key]
    while crumb is not None:
        crumb, k = crumb
        keys.append(k)
    keys.reverse()
    if len(keys) > 8:  # a path through a self-referential alias is endless; its ends say where
        keys = [*keys[:4], "…", *keys[-3:]]
    text = ""
    for k in keys:
        text += f"[{k}]" if isinstance(k, int) else (f".{k}" if text else str(k))
    return text or "the document"


def check_values(data: Any, source: str, error: type[ScenarioError] = ScenarioError,
                 max_nodes: float = float("inf")) -> None:
    """Refuse non-finite floats, integers beyond int64, nesting beyond :data:`MAX_DEPTH` and (through YAML aliases)
    more than ``max_nodes`` values, naming the field's path."""
    _scalar(data, source, error, None, None)
    stack = [(data, 0, None)] if isinstance(data, (dict, list)) else []
    nodes = 0
    while stack:
        value, depth, crumb = stack.pop()
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, child in items:
            kind = type(child)
            if kind is dict or kind is list:
                if depth >= MAX_DEPTH:
                    raise error(f"{source}: {field_path(crumb, key)}: nested more than {MAX_DEPTH} levels deep; "
                                "no moesim file needs that")
                stack.append((child, depth + 1, (crumb, key)))
            elif kind is float or kind is int:
                _scalar(child, source, error, crumb, key)
        nodes += len(value)
        if nodes > max_nodes:
            raise error(f"{source}: YAML aliases expand it to more than {int(max_nodes):,} values; write the "
                        "repeated parts out instead of using aliases (*name)")


def _scalar(value, source: str, error, crumb, key) -> None:
    if type(value) is float and value - value != 0.0:  # inf - inf and nan - nan are nan
        raise error(f"{source}: {field_path(crumb, key)} is {value}, not a finite number; give a finite value")
    if type(value) is int and not -MAX_INT <= value <= MAX_INT:
        raise error(f"{source}: {field_path(crumb, key)} is an integer of {len(str(abs(value)))} digits, out of "
                    "range (the limit is 2^63); give a smaller value")
