"""What the report processes (the command line, the papermill child) do before importing the
notebook libraries, so that they start in a fraction of a second instead of several.

nbformat validates notebooks with jsonschema, and jsonschema registers an IRI format check from
``rfc3987_syntax`` when that package is installed (JupyterLab's ``jupyter-events`` installs it).
Importing ``rfc3987_syntax`` compiles about 40 Lark grammars: 2-3 s of CPU on this machine, paid by
every process that imports nbformat, papermill or nbconvert, for a format that no notebook schema
uses. :func:`defer_iri_grammar` puts a stand-in module in its place that loads the real one the
first time anything validates an IRI, so behaviour is unchanged and the cost is only paid if used.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from typing import Any

_NAME = "rfc3987_syntax"


class _DeferredModule(types.ModuleType):
    """Stands in for ``rfc3987_syntax`` until one of its attributes is really needed."""

    def __getattr__(self, attribute: str) -> Any:
        if attribute.startswith("__"):  # the import system probes __path__ & co: not a use
            raise AttributeError(attribute)
        return getattr(_load_real(), attribute)


def _load_real() -> types.ModuleType:
    current = sys.modules.get(_NAME)
    if current is not None and not isinstance(current, _DeferredModule):
        return current
    sys.modules.pop(_NAME, None)
    try:
        return importlib.import_module(_NAME)
    except BaseException:
        if current is not None:
            sys.modules[_NAME] = current
        raise


def _is_valid_syntax(*args: Any, **kwargs: Any) -> Any:
    # jsonschema binds this name when it is imported: the real grammar loads on the first call
    return _load_real().is_valid_syntax(*args, **kwargs)


def defer_iri_grammar() -> None:
    """Make ``import rfc3987_syntax`` cheap until the package is used (no-op if it is not
    installed or already imported)."""
    if _NAME in sys.modules:
        return
    spec = importlib.util.find_spec(_NAME)
    if spec is None:
        return
    stand_in = _DeferredModule(_NAME, "deferred: the real module loads on first use")
    stand_in.__spec__ = spec
    stand_in.is_valid_syntax = _is_valid_syntax  # type: ignore[attr-defined]
    sys.modules[_NAME] = stand_in
