"""Distribution targets, by name: how a finished report reaches an audience, and how a failure
reaches the job's failure contacts. ``email`` and ``folder`` ship; a new target is one module with
a :class:`~analytics_lib.scheduling.distribution.base.Target` subclass plus one line in
:data:`TARGETS`, and audiences.yaml can use it at once."""

from __future__ import annotations

import importlib

from analytics_lib.scheduling.distribution.base import (
    DeliveryError,
    FailureNotice,
    ReportDelivery,
    Target,
)

#: name -> "module:Class" (imported on first use)
TARGETS: dict[str, str] = {
    "email": "analytics_lib.scheduling.distribution.email:EmailTarget",
    "folder": "analytics_lib.scheduling.distribution.folder:FolderTarget",
}


def target_names() -> list[str]:
    return list(TARGETS)


def get_target(name: str) -> type[Target]:
    if name not in TARGETS:
        raise KeyError(f"unknown distribution target {name!r}; targets: {', '.join(TARGETS)}")
    module, cls = TARGETS[name].split(":")
    target: type[Target] = getattr(importlib.import_module(module), cls)
    return target


__all__ = ["TARGETS", "DeliveryError", "FailureNotice", "ReportDelivery", "Target", "get_target", "target_names"]
