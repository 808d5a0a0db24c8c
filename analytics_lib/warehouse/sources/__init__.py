"""Ingestion sources, registered by name. A new source is one module plus one line here."""

from __future__ import annotations

from analytics_lib.warehouse.sources.base import IngestError, Record, Reject, RowError, Source

_REGISTRY: dict[str, str] = {
    # name -> "module:Class" (imported on first use so a source's dependencies stay optional)
    "platform-json": "analytics_lib.warehouse.sources.platform_json:PlatformJsonSource",
    "stripe": "analytics_lib.warehouse.sources.stripe_csv:StripeCsvSource",
    "csv": "analytics_lib.warehouse.sources.mapped_csv:MappedCsvSource",
    "online-retail": "analytics_lib.warehouse.sources.online_retail:OnlineRetailSource",
}


def source_names() -> list[str]:
    return list(_REGISTRY)


def get_source(name: str, **options: object) -> Source:
    """An instance of the source registered as ``name``, or an IngestError naming the known ones."""
    import importlib

    if name not in _REGISTRY:
        raise IngestError(f"unknown source {name!r}; known sources: {', '.join(_REGISTRY)}")
    module_name, cls_name = _REGISTRY[name].split(":")
    cls = getattr(importlib.import_module(module_name), cls_name)
    return cls(**options)


__all__ = ["IngestError", "Record", "Reject", "RowError", "Source", "get_source", "source_names"]
