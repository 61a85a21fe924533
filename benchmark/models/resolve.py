"""Turn a model spec (a registered name or a checkpoint path) into a ModelRef.

A ModelRef knows the card and the weights' hash, which is all the prediction cache needs; the module
itself (and torch) is loaded only when a forward pass has to run.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmark.core.errors import CheckpointError
from benchmark.models.card import ModelCard, load_card, model_fingerprint, preprocessing_key
from benchmark.models.digest import weights_digest
from benchmark.core.registry import MODELS


@dataclass
class ModelRef:
    card: ModelCard
    sha256: str
    weights_path: Path | None
    _load: Callable[[Any], Any]
    _loaded: Any = None

    def fingerprint(self) -> str:
        return model_fingerprint(self.card, self.sha256)

    def preprocessing_key(self) -> str:
        return preprocessing_key(self.card)

    @property
    def loaded(self) -> Any:
        """The LoadedModel when this run has loaded it, else None."""
        return self._loaded

    def load(self, device: Any):
        """The LoadedModel on `device`, loaded once. One registered in process was built before the
        run knew its device: it is moved there (LoadedModel.to), so --device holds for it too."""
        if self._loaded is None:
            self._loaded = self._load(device)
        elif device is not None and callable(getattr(self._loaded, "to", None)):
            self._loaded = self._loaded.to(device)
        return self._loaded


def _file_ref(path: Path, *, trust_code: bool) -> ModelRef:
    card, weights = load_card(path)

    def load(device: Any):
        from benchmark.models.loaded import load_model_file

        return load_model_file(path, trust_code=trust_code, device=device)

    return ModelRef(card, weights_digest(weights, card), weights, load)


def resolve_model(spec: str | None, *, trust_code: bool = False) -> ModelRef:
    """A checkpoint path, or a registered name whose factory returns a checkpoint path or a
    LoadedModel (for plugins that build their model in memory)."""
    spec = spec or "reference"
    path = Path(spec)
    if path.exists():
        return _file_ref(path, trust_code=trust_code)
    if spec in MODELS:
        target = MODELS.get(spec)(trust_code=trust_code)
        if isinstance(target, str | Path):
            return _file_ref(Path(target), trust_code=trust_code)
        return ModelRef(target.card, target.sha256, getattr(target, "weights_path", None),
                        lambda device: target, target)
    if path.suffix or "/" in spec:
        raise CheckpointError("checkpoint not found", where=spec)
    raise CheckpointError(
        f"no registered model {spec!r} and no such checkpoint; registered models: {', '.join(MODELS.names())}",
        where="--model")
