"""The flat index space: tensors flattened in ``order``, C order, concatenated.

Global index ``i`` maps to ``(tensor name, multi-index)``. A :class:`Layout`
is plain data; it travels to workers, into the output's attributes and back.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["Layout", "TensorSpec"]


@dataclass(frozen=True, slots=True)
class TensorSpec:
    """One parameter tensor's place in the flat index space."""

    name: str
    shape: tuple[int, ...]
    offset: int
    dtype: str

    @property
    def size(self) -> int:
        """Number of elements."""
        return math.prod(self.shape)

    @property
    def stop(self) -> int:
        """One past the tensor's last global index."""
        return self.offset + self.size


@dataclass(frozen=True, slots=True)
class Layout:
    """The tensors in flattening order, with their offsets."""

    tensors: tuple[TensorSpec, ...]

    @classmethod
    def from_shapes(
        cls, order: Sequence[str], shapes: Mapping[str, Sequence[int]], dtypes: Mapping[str, str]
    ) -> Layout:
        """Lay out tensors ``order`` with the given shapes and dtypes."""
        tensors = []
        offset = 0
        for name in order:
            spec = TensorSpec(name, tuple(int(n) for n in shapes[name]), offset, str(dtypes[name]))
            tensors.append(spec)
            offset = spec.stop
        return cls(tuple(tensors))

    @property
    def n_params(self) -> int:
        """Size of the flat index space."""
        return self.tensors[-1].stop if self.tensors else 0

    @property
    def names(self) -> tuple[str, ...]:
        """Tensor names in flattening order."""
        return tuple(t.name for t in self.tensors)

    def name_mismatch(self, names: Iterable[str]) -> str:
        """How ``names`` differ from the tensors' names (``"missing b; unexpected c"``), or ``""``."""
        given = list(names)
        missing = [n for n in self.names if n not in given]
        extra = sorted(str(n) for n in given if n not in self.names)
        parts = ([f"missing {', '.join(missing)}"] if missing else []) + (
            [f"unexpected {', '.join(extra)}"] if extra else []
        )
        return "; ".join(parts)

    def tensor_positions(self, indices: np.ndarray) -> np.ndarray:
        """Position in ``tensors`` of each global index (vectorised)."""
        starts = np.array([t.offset for t in self.tensors], dtype=np.int64)
        return np.searchsorted(starts, indices, side="right") - 1

    def locate(self, index: int) -> tuple[str, tuple[int, ...]]:
        """``(tensor name, multi-index)`` of global index ``index``."""
        if not 0 <= index < self.n_params:
            raise IndexError(f"Index {index} is outside the flat index space [0, {self.n_params}).")
        spec = self.tensors[int(self.tensor_positions(np.array([index]))[0])]
        multi = np.unravel_index(index - spec.offset, spec.shape) if spec.shape else ()
        return spec.name, tuple(int(k) for k in multi)

    def segments(self, start: int, stop: int) -> Iterator[tuple[TensorSpec, int, int]]:
        """The pieces of ``[start, stop)`` inside each tensor: ``(spec, local start, local stop)``."""
        for spec in self.tensors:
            lo, hi = max(start, spec.offset), min(stop, spec.stop)
            if lo < hi:
                yield spec, lo - spec.offset, hi - spec.offset

    def to_dict(self) -> list[dict[str, Any]]:
        """JSON-ready form: ``[{name, shape, offset, dtype}, ...]``."""
        return [{"name": t.name, "shape": list(t.shape), "offset": t.offset, "dtype": t.dtype} for t in self.tensors]

    @classmethod
    def from_dict(cls, raw: Sequence[Mapping[str, Any]]) -> Layout:
        """Read back :meth:`to_dict`."""
        return cls(tuple(TensorSpec(r["name"], tuple(r["shape"]), int(r["offset"]), r["dtype"]) for r in raw))
