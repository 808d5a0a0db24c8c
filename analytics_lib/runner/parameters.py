"""A notebook's parameters, read from its cell tagged ``parameters``, and validation of the values
a run is given against them, before any kernel starts (papermill alone only warns).

A parameter is one line ``name: type = default  # help``. The annotation is the contract: ``str``,
``int``, ``float``, ``bool``, ``list``, ``dict``, optionally ``| None``. A parameter whose default
is ``None`` while its type does not allow ``None`` is required."""

from __future__ import annotations

import ast
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

TYPES: dict[str, type | tuple[type, ...]] = {
    "str": str, "int": int, "float": (int, float), "bool": bool, "list": list, "dict": dict,
}


class ParameterError(ValueError):
    """Parameters that do not match the notebook's parameters cell."""


@dataclass(frozen=True)
class Parameter:
    name: str
    type_name: str  # e.g. "str", "dict | None"
    default: Any
    help: str = ""

    @property
    def optional(self) -> bool:
        return "None" in self.type_name.split(" | ")

    @property
    def base_types(self) -> list[str]:
        return [t for t in self.type_name.split(" | ") if t != "None"]

    @property
    def required(self) -> bool:
        return self.default is None and not self.optional

    def check(self, value: Any) -> Any:
        """The value, if it fits the declared type (an int is accepted for a float)."""
        if value is None:
            if self.optional:
                return None
            raise ParameterError(f"parameter '{self.name}' must be {self.type_name}, not empty")
        for name in self.base_types:
            expected = TYPES.get(name)
            if expected is None:
                return value  # an annotation we do not check
            if name in ("int", "float") and isinstance(value, bool):
                continue
            if isinstance(value, expected):
                return float(value) if name == "float" else value
        raise ParameterError(f"parameter '{self.name}' must be {self.type_name}, got {type(value).__name__} {value!r:.60}")

    def coerce_text(self, text: str) -> Any:
        """A ``-p key=value`` string as this parameter's type (YAML for non-strings)."""
        if self.base_types == ["str"]:
            return None if (text in ("", "null", "None") and self.optional) else text
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ParameterError(f"parameter '{self.name}': cannot read {text!r} as {self.type_name}") from exc
        if "list" in self.base_types and isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if "str" in self.base_types and not isinstance(value, (str, type(None))) and not any(
                isinstance(value, TYPES[t]) for t in self.base_types if t in TYPES and t != "str"):
            value = text
        return value


def _annotation(node: ast.expr | None) -> str:
    if node is None:
        return "any"
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return f"{_annotation(node.left)} | {_annotation(node.right)}"
    if isinstance(node, ast.Constant) and node.value is None:
        return "None"
    if isinstance(node, ast.Name):
        return node.id
    return ast.unparse(node)


def read_notebook(path: Path) -> dict[str, Any]:
    """A notebook file as plain JSON (nbformat 4). The runner only reads cells' sources and tags,
    which needs no schema validation (nbformat and its validator cost a second to import)."""
    try:
        nb = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ParameterError(f"cannot read notebook {path}: {exc}") from exc
    if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list):
        raise ParameterError(f"{path} is not a notebook (no list of cells)")
    return nb


def cell_source(cell: Mapping[str, Any]) -> str:
    """A cell's source as one string (the file may store it as a list of lines)."""
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else str(source)


def parameters_cell(nb: Mapping[str, Any]) -> Mapping[str, Any]:
    cells = [c for c in nb["cells"] if c.get("cell_type") == "code"
             and "parameters" in (c.get("metadata") or {}).get("tags", [])]
    if len(cells) != 1:
        raise ParameterError(f"a report notebook needs exactly one cell tagged 'parameters' (found {len(cells)})")
    return cells[0]


def read_parameters(path: Path, nb: Mapping[str, Any] | None = None) -> dict[str, Parameter]:
    """The parameters a notebook declares, in order (``nb``: the notebook already read)."""
    source = cell_source(parameters_cell(nb if nb is not None else read_notebook(path)))
    lines = source.splitlines()
    out: dict[str, Parameter] = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            name, annotation, value = node.target.id, _annotation(node.annotation), node.value
        elif isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            name, annotation, value = node.targets[0].id, "any", node.value
        else:
            continue
        try:
            default = ast.literal_eval(value) if value is not None else None
        except ValueError:
            default = ast.unparse(value)
        line = lines[node.lineno - 1]
        help_text = line.split("#", 1)[1].strip() if "#" in line else ""
        out[name] = Parameter(name, annotation, default, help_text)
    return out


def validate(declared: Mapping[str, Parameter], values: Mapping[str, Any], notebook: str = "") -> dict[str, Any]:
    """The complete, checked parameter set: defaults + ``values``; unknown, missing or mistyped
    parameters raise :class:`ParameterError` naming them."""
    where = f" of {notebook}" if notebook else ""
    unknown = sorted(set(values) - set(declared))
    if unknown:
        raise ParameterError(f"unknown parameter{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}{where}; "
                             f"known: {', '.join(declared)}")
    merged: dict[str, Any] = {}
    for name, param in declared.items():
        if name in values:
            merged[name] = param.check(values[name])
        elif param.required:
            raise ParameterError(f"missing required parameter '{name}'{where} ({param.type_name}"
                                 f"{': ' + param.help if param.help else ''})")
        else:
            merged[name] = param.default
    return merged


def parse_assignments(declared: Mapping[str, Parameter], pairs: list[str]) -> dict[str, Any]:
    """``-p key=value`` options as typed values."""
    out: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise ParameterError(f"-p expects key=value, got {pair!r}")
        key, text = pair.split("=", 1)
        key = key.strip()
        if key not in declared:
            raise ParameterError(f"unknown parameter '{key}'; known: {', '.join(declared)}")
        out[key] = declared[key].coerce_text(text)
    return out


def load_parameters_file(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ParameterError(f"parameters file not found: {path}") from exc
    except yaml.YAMLError as exc:
        raise ParameterError(f"parameters file {path} is not valid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict) or not all(isinstance(k, str) for k in data):
        raise ParameterError(f"parameters file {path} must be a mapping of parameter names to values")
    return data
