"""The inference runtime behind one small interface, so decoders never see which one runs.

LiteRT (``ai_edge_litert``, the maintained successor of tflite-runtime) is used where it is
installed, with XNNPACK on the CPU (its default for float models) and ``threads`` threads;
``tflite_runtime`` is the fallback where only that is installed. A ``Runtime`` is not
thread-safe: one thread at a time calls ``run`` (``sensors.camera.inference.SharedDetector``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from models.manifest import ModelError


@dataclass(frozen=True)
class TensorInfo:
    name: str
    index: int
    shape: tuple[int, ...]
    dtype: type[np.generic]
    scale: float = 0.0  # quantization: real = (q - zero_point) * scale; 0 = not quantized
    zero_point: int = 0

    @property
    def quantized(self) -> bool:
        return self.scale != 0.0 and np.issubdtype(self.dtype, np.integer)


class Runtime(Protocol):
    """A loaded model: its input and output tensors, and one inference at a time."""

    name: str  # "litert" or "tflite_runtime"
    input: TensorInfo
    outputs: tuple[TensorInfo, ...]

    def run(self, tensor: np.ndarray) -> list[np.ndarray]:
        """Set the input (already shaped and typed as ``input``), invoke, return the outputs
        as float32 arrays (dequantized where the model is quantized)."""
        ...

    def invoke(self) -> None:
        """Invoke on whatever input is set (the benchmark's bare baseline)."""
        ...


def _interpreter_class() -> tuple[str, Any]:
    try:
        from ai_edge_litert.interpreter import Interpreter

        return "litert", Interpreter
    except ImportError:
        pass
    try:
        from tflite_runtime.interpreter import Interpreter

        return "tflite_runtime", Interpreter
    except ImportError:
        raise ModelError(
            "no TFLite runtime installed: pip install ai-edge-litert (or tflite-runtime)"
        ) from None


class TFLiteRuntime:
    """A TFLite interpreter (LiteRT or tflite_runtime) over a model held in memory."""

    def __init__(self, content: bytes, *, threads: int = 2, label: str = "model") -> None:
        if threads < 1:
            raise ModelError(f"{label}: threads must be at least 1, got {threads}")
        self.name, interpreter_class = _interpreter_class()
        self._content = content  # the interpreter reads the buffer in place; keep it alive
        try:
            self.interpreter = interpreter_class(model_content=content, num_threads=threads)
            self.interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise ModelError(f"{label}: the runtime cannot load it: {exc}") from None
        inputs = [_info(d) for d in self.interpreter.get_input_details()]
        if len(inputs) != 1:
            raise ModelError(f"{label}: expected one input tensor, the model has {len(inputs)}")
        self.input = inputs[0]
        self.outputs = tuple(_info(d) for d in self.interpreter.get_output_details())
        self.threads = threads

    def run(self, tensor: np.ndarray) -> list[np.ndarray]:
        self.interpreter.set_tensor(self.input.index, tensor)
        self.interpreter.invoke()
        out = []
        for info in self.outputs:
            value = self.interpreter.get_tensor(info.index)
            if info.quantized:
                value = (value.astype(np.float32) - info.zero_point) * np.float32(info.scale)
            elif value.dtype != np.float32:
                value = value.astype(np.float32)
            out.append(value)
        return out

    def invoke(self) -> None:
        self.interpreter.invoke()


def _info(detail: dict[str, Any]) -> TensorInfo:
    scale, zero_point = detail.get("quantization", (0.0, 0))
    return TensorInfo(
        name=str(detail["name"]),
        index=int(detail["index"]),
        shape=tuple(int(v) for v in detail["shape"]),
        dtype=detail["dtype"],
        scale=float(scale),
        zero_point=int(zero_point),
    )


def open_runtime(content: bytes, *, threads: int = 2, label: str = "model") -> TFLiteRuntime:
    return TFLiteRuntime(content, threads=threads, label=label)
