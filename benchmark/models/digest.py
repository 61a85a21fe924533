"""The hash that keys a model's cached predictions: every file the model reads, not only the first."""
from __future__ import annotations

from pathlib import Path

from benchmark.models.card import ModelCard


def weights_digest(weights: Path, card: ModelCard | None = None) -> str:
    """sha256 of everything the model reads: the weights file, and for ONNX its external data."""
    from benchmark.core.hashing import sha256_file

    digest = sha256_file(weights)
    if (card is None or card.format == "onnx") and weights.suffix.lower() == ".onnx":
        from benchmark.models.loaders_onnx import external_data_files

        extra = external_data_files(weights)
        if extra:
            import hashlib

            text = digest + "".join(f"\n{p.name}:{sha256_file(p)}" for p in extra)
            digest = hashlib.sha256(text.encode()).hexdigest()
    return digest
