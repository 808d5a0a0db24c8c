"""The model registry: one folder per model name, one sub-folder per trained version.

``models_registry/<name>/<version>/`` holds ``model.joblib`` (the fitted object), ``metadata.json``
(name, version, created, feature set and its version, training data window and warehouse
versions, parameters, library versions) and ``scorecard.json`` (the out-of-time evaluation against
its baseline). Versions are ``YYYYMMDDTHHMMSSffffff-<hash>`` so they sort by time; ``load(name)`` takes
the latest. A model whose feature set or library versions do not match the running code is
refused with a message that says why and how to fix it (retrain).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import joblib

from analytics_lib.config import PROJECT_ROOT

ENV_REGISTRY = "PAYMENT_ANALYTICS_MODELS"
#: libraries whose version must match for a pickled model to load safely
PINNED_LIBRARIES = ("scikit-learn", "numpy", "scipy")


class RegistryError(RuntimeError):
    """A model cannot be saved or loaded; the message says what to do."""


def default_location() -> Path:
    return Path(os.environ.get(ENV_REGISTRY, PROJECT_ROOT / "models_registry")).expanduser().resolve()


def library_versions() -> dict[str, str]:
    out = {}
    for lib in PINNED_LIBRARIES:
        try:
            out[lib] = version(lib)
        except PackageNotFoundError:
            out[lib] = "missing"
    return out


@dataclass
class ModelMetadata:
    name: str
    version: str
    created_at: str
    feature_set: list[str]
    feature_version: str
    training_window: dict[str, str]
    warehouse_versions: dict[str, int]
    params: dict[str, Any]
    libraries: dict[str, str] = field(default_factory=library_versions)
    rows: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def feature_fingerprint(features: list[str], extra: str = "") -> str:
    """A short hash of the ordered feature names (and any encoding detail that must match)."""
    return hashlib.sha256(("\x1f".join(features) + "\x1e" + extra).encode()).hexdigest()[:12]


@dataclass
class LoadedModel:
    metadata: ModelMetadata
    model: Any
    scorecard: dict[str, Any]
    path: Path


class Registry:
    """Models on disk under ``location`` (default ``$PAYMENT_ANALYTICS_MODELS`` or ./models_registry)."""

    def __init__(self, location: str | os.PathLike[str] | None = None):
        self.location = Path(location).expanduser().resolve() if location else default_location()

    def save(self, metadata: ModelMetadata, model: Any, scorecard: dict[str, Any]) -> Path:
        """Write a new version atomically (a half-written version is never visible)."""
        target = self.location / metadata.name / metadata.version
        if target.exists():
            raise RegistryError(f"model {metadata.name} version {metadata.version} already exists")
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{metadata.version}-", dir=target.parent))
        try:
            joblib.dump(model, staging / "model.joblib", compress=3)
            (staging / "metadata.json").write_text(json.dumps(metadata.to_dict(), indent=2, default=str))
            (staging / "scorecard.json").write_text(json.dumps(scorecard, indent=2, default=str))
            os.replace(staging, target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return target

    def versions(self, name: str) -> list[str]:
        folder = self.location / name
        if not folder.is_dir():
            return []
        return sorted(p.name for p in folder.iterdir()
                      if p.is_dir() and not p.name.startswith(".") and (p / "metadata.json").exists())

    def names(self) -> list[str]:
        if not self.location.is_dir():
            return []
        return sorted(p.name for p in self.location.iterdir() if p.is_dir() and self.versions(p.name))

    def load(self, name: str, version_id: str | None = None, feature_version: str | None = None) -> LoadedModel:
        """The latest (or the named) version; refuses incompatible feature sets and libraries."""
        versions = self.versions(name)
        if not versions:
            raise RegistryError(
                f"no trained model {name!r} in {self.location}; train one with "
                f"`payment-analytics models train {name}`")
        chosen = version_id or versions[-1]
        if chosen not in versions:
            raise RegistryError(f"model {name!r} has no version {chosen!r}; versions: {', '.join(versions)}")
        path = self.location / name / chosen
        try:
            meta = ModelMetadata(**json.loads((path / "metadata.json").read_text()))
        except (OSError, ValueError, TypeError) as exc:
            raise RegistryError(f"model {name} version {chosen}: unreadable metadata ({exc})") from None
        if feature_version is not None and meta.feature_version != feature_version:
            raise RegistryError(
                f"model {name} version {chosen} was trained on feature set {meta.feature_version}, "
                f"but this code builds feature set {feature_version}; retrain it with "
                f"`payment-analytics models train {name}`")
        running = library_versions()
        mismatched = {lib: (meta.libraries.get(lib), running[lib]) for lib in PINNED_LIBRARIES
                      if _minor(meta.libraries.get(lib)) != _minor(running[lib])}
        if mismatched:
            detail = ", ".join(f"{lib} {old} -> {new}" for lib, (old, new) in mismatched.items())
            raise RegistryError(f"model {name} version {chosen} was saved with other library versions "
                                f"({detail}); retrain it with `payment-analytics models train {name}`")
        try:
            model = joblib.load(path / "model.joblib")
        except Exception as exc:  # a corrupt or foreign file: say so, do not crash with a traceback
            raise RegistryError(f"model {name} version {chosen}: cannot load model.joblib ({exc})") from None
        scorecard = json.loads((path / "scorecard.json").read_text())
        return LoadedModel(meta, model, scorecard, path)


def _minor(v: str | None) -> str | None:
    """'1.9.1' -> '1.9': pickles are compatible within a minor release of these libraries."""
    if not v:
        return v
    return ".".join(v.split(".")[:2])


def new_version(payload: str = "") -> str:
    """Sortable by creation time to the microsecond, so two versions saved in one second keep
    their order."""
    now = datetime.now(UTC)
    return now.strftime("%Y%m%dT%H%M%S%f") + "-" + hashlib.sha256(f"{now.isoformat()}{payload}".encode()).hexdigest()[:6]
