"""ONNX checkpoints through onnxruntime, behind the same tensor-in, tensor-out call as torch modules."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from benchmark.core.errors import CheckpointError

_NUMPY_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16,
                "tensor(double)": np.float64}
# An output with this name, when present, serves LoadedModel.embed.
EMBEDDING_OUTPUT = "embedding"


def _providers(ort: object, device: torch.device) -> list[object]:
    available = ort.get_available_providers()  # type: ignore[attr-defined]
    if device.type == "cuda" and "CUDAExecutionProvider" in available:
        return [("CUDAExecutionProvider", {"device_id": device.index or 0}), "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


class OnnxModule:
    """Calls an onnxruntime session with a torch batch; returns the first output as a tensor."""

    def __init__(self, session: object, where: str):
        self.session = session
        self.where = where
        inputs = session.get_inputs()  # type: ignore[attr-defined]
        if len(inputs) != 1:
            raise CheckpointError(f"the ONNX graph has {len(inputs)} inputs; the harness feeds one "
                                  "image batch", where=where)
        self.input_name = inputs[0].name
        self.input_shape = tuple(inputs[0].shape)
        dtype = _NUMPY_TYPES.get(inputs[0].type)
        if dtype is None:
            raise CheckpointError(f"the ONNX input {self.input_name!r} has type {inputs[0].type}; "
                                  "expected float, float16 or double", where=where)
        self.dtype = dtype
        self.output_names = [o.name for o in session.get_outputs()]  # type: ignore[attr-defined]
        if EMBEDDING_OUTPUT in self.output_names:
            self.embed = self._embed

    def _run(self, x: torch.Tensor, output: str) -> torch.Tensor:
        array = np.ascontiguousarray(x.detach().to("cpu").numpy().astype(self.dtype, copy=False))
        (result,) = self.session.run([output], {self.input_name: array})  # type: ignore[attr-defined]
        return torch.from_numpy(np.asarray(result))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self._run(x, self.output_names[0])

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        return self._run(x, EMBEDDING_OUTPUT)


def load_onnx(weights: Path, device: torch.device) -> OnnxModule:
    where = str(weights)
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise CheckpointError("onnxruntime is not installed; pip install 'cxrbench[onnx]'",
                              where=where) from exc
    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only; onnxruntime's warnings are not the user's concern
    try:
        session = ort.InferenceSession(where, sess_options=options,
                                       providers=_providers(ort, device))
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph/InvalidProtobuf types
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise CheckpointError(f"onnxruntime cannot load it: {first}", where=where) from exc
    return OnnxModule(session, where)


def external_data_files(model_path: Path) -> list[Path]:
    """The files an ONNX model keeps its tensors in beside it (external data), each checked to lie
    in the model's folder: the fingerprint must cover them, and a location may not climb out."""
    try:
        import onnx
        from onnx.external_data_helper import _get_all_tensors, uses_external_data
    except ImportError as exc:
        raise CheckpointError("onnx is not installed; pip install 'cxrbench[onnx]'",
                              where=str(model_path)) from exc
    try:
        model = onnx.load(str(model_path), load_external_data=False)
    except Exception:  # protobuf's DecodeError and onnx's own: onnxruntime names the problem later
        return []
    folder = model_path.resolve().parent
    found: dict[str, Path] = {}
    for tensor in _get_all_tensors(model):
        if not uses_external_data(tensor):
            continue
        location = next((e.value for e in tensor.external_data if e.key == "location"), "")
        target = (folder / location).resolve()
        if not location or Path(location).is_absolute() or folder not in target.parents:
            raise CheckpointError(f"tensor {tensor.name!r} keeps its data at {location!r}, outside "
                                  "the model's folder; refused", where=str(model_path))
        if not target.is_file():
            raise CheckpointError(f"tensor {tensor.name!r} keeps its data in {location!r}, which "
                                  "does not exist", where=str(model_path))
        found[location] = target
    return [found[k] for k in sorted(found)]
