"""A shard's elements in groups of one dtype, on a worker: their values, their losses at perturbed points, and
the first pass (each element's stencil evaluated and its derivative estimated with its error bar).

:mod:`.shards` runs a shard's groups through this first pass and :mod:`.judging` judges them; the probe times
the same path (:func:`seconds_per_loss`). A loss is evaluated in place (one element at a time, restored
exactly), through the model's staged losses, its ``perturbed_losses``, or its ``loss_batch`` of perturbed copies.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from .fd import STENCILS, Estimate, batched_stencil_losses, estimate, points, stencil_losses, step_sizes
from .layout import TensorSpec
from .problem import OFF_THETA, Loaded, call_model, fastest

__all__ = [
    "FirstPass",
    "Group",
    "Segment",
    "by_dtype",
    "first_pass",
    "losses_of",
    "per_element",
    "seconds_per_loss",
    "subgroup",
    "values_of",
]

Segment = tuple[TensorSpec, np.ndarray]


@dataclass(frozen=True, slots=True)
class Group:
    """Consecutive segments (tensors and the positions checked in them) of one dtype, with their
    indices in the flat index space: stepped, evaluated, estimated and judged in one pass."""

    segments: tuple[Segment, ...]
    columns: np.ndarray

    @property
    def dtype(self) -> str:
        return self.segments[0][0].dtype


def by_dtype(segments: list[Segment]) -> list[Group]:
    """Consecutive segments of the same dtype, together: a shard of many small tensors would
    otherwise pay numpy's overhead per tensor."""
    runs: list[list[Segment]] = []
    for segment in segments:
        if runs and runs[-1][0][0].dtype == segment[0].dtype:
            runs[-1].append(segment)
        else:
            runs.append([segment])
    return [Group(tuple(run), np.concatenate([spec.offset + positions for spec, positions in run])) for run in runs]


def subgroup(group: Group, chosen: np.ndarray) -> Group:
    """The elements of ``group`` where ``chosen`` (a mask over them) is True."""
    segments, first = [], 0
    for spec, positions in group.segments:
        part = chosen[first : first + positions.size]
        first += positions.size
        if part.any():
            segments.append((spec, positions[part]))
    return Group(tuple(segments), group.columns[chosen])


def per_element(loaded: Loaded, per_tensor: Callable[[int], float], group: Group) -> np.ndarray:
    """A per-tensor figure (``per_tensor(the tensor's number)``) repeated for each element of the group."""
    return np.concatenate(
        [
            np.full(positions.size, per_tensor(loaded.number[spec.name]), dtype=np.float64)
            for spec, positions in group.segments
        ]
    )


def values_of(loaded: Loaded, group: Group) -> np.ndarray:
    """The parameters' values at the group's elements, in their dtype."""
    if loaded.batched:  # one fancy index, not one per tensor (float32 values are exact in float64)
        dtype = np.float64 if loaded.settings.promote else group.dtype  # a promoted run's values are float64
        return np.asarray(loaded.theta[group.columns].astype(dtype, copy=False))
    # no flat copy of the parameters
    return np.concatenate([loaded.params[spec.name].reshape(-1)[positions] for spec, positions in group.segments])


def losses_of(loaded: Loaded, groups: Sequence[Group], perturbed: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Each group's losses with its elements set to their ``perturbed`` values, one row per element."""
    if loaded.batched:
        return _batched_losses(loaded, [group.columns for group in groups], list(perturbed))
    return [
        np.concatenate(
            [_segment_losses(loaded, spec, positions, rows) for spec, positions, rows in _rows(group, table)]
        )
        for group, table in zip(groups, perturbed, strict=True)
    ]


@dataclass(frozen=True, slots=True)
class FirstPass:
    """One group's first pass: the parameters' values, their steps, the estimates, the loss's noise per
    element, and the stencil's losses and the steps they took (what a second look starts from)."""

    values: np.ndarray
    h: np.ndarray
    est: Estimate
    noise: np.ndarray
    table: np.ndarray
    taken: np.ndarray


def first_pass(loaded: Loaded, groups: list[Group]) -> list[FirstPass]:
    """Each group's first pass (:class:`FirstPass`).

    The noise is the tensor's (measured by the probe), but never below one rounding unit of the
    largest loss the element's stencil evaluated: a loss that is small at θ is not small nearby.
    """
    settings = loaded.settings
    stencils = []
    for group in groups:
        values = values_of(loaded, group)
        h = step_sizes(values, settings.scheme, settings.epsilon)
        stencils.append((values, h, *points(values, h, settings.scheme)))
    losses = losses_of(loaded, groups, [perturbed for _, _, perturbed, _ in stencils])
    evaluated = []
    for group, table, (values, h, _, taken) in zip(groups, losses, stencils, strict=True):
        # (of the finite losses: one past the edge of the loss's domain, an overflow to inf, has no rounding, and an
        # infinite noise would leave the second look unable to judge the element on its finite finer steps)
        finite = np.where(np.isfinite(table), np.abs(table), 0.0)
        rounding = settings.eps(group.dtype) * np.max(finite, axis=1, initial=0.0)
        measured = per_element(loaded, settings.noise_of, group)
        # Never below one rounding unit, even along a tensor the loss ignores: an analytic value under the loss's
        # resolution there is rounding of a gradient that cancels (a bias before a batch norm), not a bug.
        noise = np.fmax(measured, rounding)
        est = estimate(table, taken, settings.scheme, epsilon=settings.epsilon, loss0=settings.loss0, noise=noise)
        evaluated.append(FirstPass(values, h, est, noise, table, taken))
    return evaluated


def seconds_per_loss(loaded: Loaded, budget_seconds: float = 0.2, at_most: int = 20) -> float:
    """Seconds per loss evaluation at θ, in this worker, the way the shards will evaluate it.

    The fastest of a few runs: one loss, or, for a batched model, the shards' own path
    (perturbation, one batch, estimates) over the first indices, divided by its losses.
    That also warms the path up in this worker before the shards time it.
    """
    if not (loaded.batched or loaded.perturbs):
        return fastest(functools.partial(call_model, "loss at θ, timed", loaded.loss), budget_seconds, at_most)
    layout = loaded.settings.layout
    width = len(STENCILS[loaded.settings.scheme])
    indices = min(layout.n_params, 64)
    if loaded.batched:
        indices = max(1, loaded.batch_rows(width * indices) // width)
    groups = by_dtype([(spec, np.arange(lo, hi)) for spec, lo, hi in layout.segments(0, indices)])
    return fastest(functools.partial(first_pass, loaded, groups), budget_seconds, at_most) / (width * indices)


def _rows(group: Group, perturbed: np.ndarray) -> Iterator[tuple[TensorSpec, np.ndarray, np.ndarray]]:
    """Each segment of a group with its rows of the group's perturbed values."""
    first = 0
    for spec, positions in group.segments:
        yield spec, positions, perturbed[first : first + positions.size]
        first += positions.size


def _segment_losses(loaded: Loaded, spec: TensorSpec, positions: np.ndarray, perturbed: np.ndarray) -> np.ndarray:
    """One tensor's stencil losses, in place: only the stages from the tensor's own on when the
    model is staged (fewest evaluations), else the whole loss."""
    if loaded.stages:
        return call_model(  # type: ignore[no-any-return]
            f"stages near θ (tensor {spec.name})",
            stencil_losses,
            functools.partial(_float_loss_from, loaded, loaded.stage_of[spec.name]),
            loaded.flat[spec.name],
            positions,
            perturbed,
            hint=OFF_THETA,
        )
    if loaded.perturbs:
        return call_model(  # type: ignore[no-any-return]
            f"perturbed_losses near θ (tensor {spec.name})",
            loaded.perturbed_losses,
            spec.name,
            positions,
            perturbed,
            hint=OFF_THETA,
        )
    scalar = complex if loaded.settings.scheme == "complex-step" else float
    return call_model(  # type: ignore[no-any-return]
        f"loss near θ (tensor {spec.name})",
        stencil_losses,
        lambda: scalar(loaded.loss()),
        loaded.flat[spec.name],
        positions,
        perturbed,
        hint=OFF_THETA,
    )


def _float_loss_from(loaded: Loaded, stage: int) -> float:
    return float(loaded.loss_from(stage))


def _batched_losses(loaded: Loaded, columns: list[np.ndarray], perturbed: list[np.ndarray]) -> list[np.ndarray]:
    """The stencil losses through ``loss_batch``, per group (its flat ``columns`` and perturbed values):
    as many points per call as the memory budget allows, across groups."""
    every = columns[0] if len(columns) == 1 else np.concatenate(columns)
    # float32 values are exact in float64, and written back as float32
    table = perturbed[0] if len(perturbed) == 1 else np.concatenate(perturbed)
    width = table.shape[1]
    per_call = max(1, loaded.batch_rows(width * every.size) // width)
    parts = []
    for first in range(0, every.size, per_call):
        part = slice(first, first + per_call)
        indices = every[part]
        parts.append(
            call_model(
                functools.partial(_batch_near, indices),
                batched_stencil_losses,
                loaded.loss_batch,
                loaded.params,
                indices,
                table[part],
                loaded.theta,
            )
        )
    losses = parts[0] if len(parts) == 1 else np.concatenate(parts) if parts else np.empty((0, width))
    if len(perturbed) == 1:
        return [losses]
    bounds = np.cumsum([0, *(p.shape[0] for p in perturbed)])
    return [losses[bounds[j] : bounds[j + 1]] for j in range(len(perturbed))]


def _batch_near(indices: np.ndarray) -> str:
    return f"loss_batch near θ (indices {indices[0]}..{indices[-1]})"
