"""`cxrbench card check`: load a model and push a few synth images through the harness's own
preprocessing, then say in one table whether its card describes it (shape, finiteness, logits or
probabilities, class mapping, and outputs that do not depend on the image)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from benchmark.core.labels import CLASSES
from benchmark.models.output_checks import CONSTANT_SPREAD, output_spread

PER_CLASS = 2  # synth images of each class: clearly different images, two of a kind


@dataclass
class CheckRow:
    check: str
    found: str
    status: str  # ok | warn | fail


@dataclass
class CardCheck:
    model: str
    rows: list[CheckRow] = field(default_factory=list)

    @property
    def usable(self) -> bool:
        return all(r.status != "fail" for r in self.rows)

    @property
    def reason(self) -> str | None:
        failed = [r for r in self.rows if r.status == "fail"]
        return f"{failed[0].check}: {failed[0].found}" if failed else None

    def add(self, check: str, found: str, status: str) -> None:
        self.rows.append(CheckRow(check, found, status))


def _looks_like(raw: np.ndarray) -> str:
    sums = raw.sum(axis=1)
    if (raw >= -1e-6).all() and (raw <= 1 + 1e-6).all() and np.allclose(sums, 1.0, atol=1e-3):
        return "probabilities"
    return "logits"


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _synth_batch(card: Any, seed: int):
    """PER_CLASS synth images of each class, decoded and resized exactly as a run would."""
    import torch

    from benchmark.data.dataset import resolve_dataset
    from benchmark.execution.forward import _Prepared

    dataset = resolve_dataset(f"synth:n_patients=16,seed={seed}")
    labels = dataset.table["label"].to_numpy()
    rows = np.array([i for c in CLASSES for i in np.flatnonzero(labels == c)[:PER_CLASS]])
    spec = card.input
    prepared = _Prepared(dataset, rows, spec.size, spec.keep_aspect, False, False, spec.interpolation)
    return torch.stack([prepared[k][1] for k in range(len(rows))])


def check_card(model_spec: str, *, trust_code: bool = False, device: str = "cpu", seed: int = 0) -> CardCheck:
    """Every check a card can fail; errors loading the model propagate as one-line CxrbenchErrors."""
    import torch

    from benchmark.models.resolve import resolve_model

    ref = resolve_model(model_spec, trust_code=trust_code)
    loaded = ref.load(device)
    card = loaded.card
    result = CardCheck(card.name)
    result.add("card", f"format {card.format}, architecture {card.architecture or '-'}", "ok")
    batch = _synth_batch(card, seed)
    with torch.inference_mode():
        raw_any = loaded._pick_output(loaded._forward(loaded.module, batch, "card check"))
    if not isinstance(raw_any, torch.Tensor):
        result.add("output", f"a {type(raw_any).__name__}, not a tensor", "fail")
        return result
    raw = raw_any.detach().to("cpu", torch.float64).numpy()
    want = (len(batch), card.num_classes)
    ok_shape = raw.shape == want
    result.add("output shape", f"{tuple(raw.shape)} for {len(batch)} images (card: {card.num_classes} "
               "classes)", "ok" if ok_shape else "fail")
    if not ok_shape:
        return result
    finite = bool(np.isfinite(raw).all())
    result.add("finite", "yes" if finite else f"{int((~np.isfinite(raw)).sum())} NaN/inf values",
               "ok" if finite else "fail")
    if not finite:
        return result
    looks = _looks_like(raw)
    if looks == card.output:
        status = "ok"
    else:  # softmax of probabilities flattens them (warn); probabilities that are not cannot be read
        status = "warn" if card.output == "logits" else "fail"
    result.add("outputs look like", f"{looks} (card says {card.output})", status)
    mapping = ", ".join(f"{c} -> {CLASSES[i]}" for c, i in zip(card.classes, card.class_index))
    result.add("class mapping", mapping, "ok")
    probs = _softmax(raw) if card.output == "logits" else raw
    spread = output_spread(probs)
    constant = spread < CONSTANT_SPREAD
    result.add("depends on the image", f"largest per-class range of probabilities {spread:.3g} over "
               f"{len(batch)} different synth images" + (" (nearly constant: check input.mean, "
               "input.std and input.size)" if constant else ""), "warn" if constant else "ok")
    return result
