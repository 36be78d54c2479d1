"""What a run will cost, before it runs: loss evaluations, wall time, memory per worker and on the client,
and the output's size (``gradcheck plan``, and the report's estimate against what the run took).

Pure arithmetic on plain data: the layout, the run's slots, its settings, how long one loss takes
(the probe's timing, or a figure the user gives) and the cluster's size. The constants below were
measured on a 2-core machine by ``benchmarks/scale.py``; a faster or slower machine moves them.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from .fd import STENCILS
from .layout import TensorSpec
from .plan import Slots
from .problem import Settings
from .taylor import TAYLOR_MULTIPLES

__all__ = ["Cost", "estimate_cost"]

MIB = 2**20
#: Resident memory of an idle Dask worker process once it has imported numpy, Zarr and the pipeline (77 MB)...
WORKER_BASELINE_BYTES = 80 * MIB
#: ...and of the process that runs ``gradcheck run`` with a local cluster (client, scheduler, nannies: 82-84 MB
#: at 10^7 and 10^8 parameters alike); an in-process run's is a worker's.
CLIENT_BASELINE_BYTES = 90 * MIB
#: Starting a local cluster of worker processes (seconds, whatever its size on a small machine)...
LOCAL_CLUSTER_SECONDS = 2.0
#: ...and connecting to an existing one.
CONNECT_SECONDS = 0.5
#: How fast a worker reads (decodes) parameters and data from a store, bytes per second.
READ_BYTES_PER_SECOND = 300e6
#: Per element of a tensor, the work around one loss along a random direction (drawing the tangent,
#: moving every element, measuring the move the floats took), in seconds.
DIRECTION_ELEMENT_SECONDS = 3e-9
#: Losses the probe takes besides the noise's: at θ twice, near θ once, and the timing runs.
PROBE_LOSSES = 6
#: Losses the noise probe takes per tensor on a smooth loss (two spacings of 9 points each, and one more)...
NOISE_LOSSES_PER_TENSOR = 19
#: ...and per float32 tensor, its rounding against float64 (9 points, each in float32 and in float64).
FLOAT32_NOISE_LOSSES = 18
#: A gradient costs about this many losses (a backward pass is about twice a forward one).
GRADIENT_LOSSES = 3.0
#: A direction of a float32 tensor is nearly always looked at again (its first bar is wide): this many more
#: losses on average (10.9 in all with richardson on the scale benchmark's model).
FLOAT32_DIRECTION_LOOK = 7
#: Bytes a checked element takes in the output: analytic, numeric, allowed and step (float64), status and
#: nonfinite (int8), and for a sampled run its global index (int64).
ELEMENT_BYTES = 8 * 4 + 2
INDEX_BYTES = 8
#: The output's metadata: the group's and each array's zarr.json, the report in the attributes.
METADATA_BYTES = 64 * 2**10


@dataclass(frozen=True, slots=True)
class Cost:
    """A run's cost: estimated (``gradcheck plan``) or measured (the report's ``cost.actual``)."""

    loss_evaluations: int
    wall_seconds: float
    worker_memory_bytes: int
    client_memory_bytes: int
    output_bytes: int

    def to_dict(self) -> dict[str, float]:
        """JSON-ready form, the keys ``gradcheck plan --json`` prints."""
        return asdict(self)


def estimate_cost(
    settings: Settings,
    slots: Slots,
    *,
    directions: int,
    shards: int,
    workers: int,
    loss_seconds: float,
    loss_equivalents_per_index: float | None = None,
    noise_evaluations: int | None = None,
    data_bytes: int,
    float32_data_bytes: int = 0,
    local_cluster: bool,
    in_process: bool,
    remaining: float = 1.0,
) -> Cost:
    """A run's cost, from what is known before it runs: its ``settings`` (the layout, the scheme, the Taylor
    test, precision, the second look) and ``slots``, ``directions`` per tensor, and the shards and workers.

    Loss evaluations: the probe's (its noise measurement counted as measured, or
    :data:`NOISE_LOSSES_PER_TENSOR` per tensor and :data:`FLOAT32_NOISE_LOSSES` more per float32 one), the
    shards' (the scheme's stencil per checked element, or ``loss_equivalents_per_index`` for a staged model) and the directions' (the stencil, or the Taylor test's
    16; a float32 tensor's directions nearly always take a second look: :data:`FLOAT32_DIRECTION_LOOK` more).
    A second look at suspect elements is not foreseen (nor a float32 element's judgement again in float64):
    on the accuracy zoo's correct models it took 11% of the shards' losses more in float64 and 37% in
    float32 (``benchmarks/accuracy.py``), far less on smooth models, and more on a wrong one.

    Wall time: the cluster's start, reading the stores on every worker at once, the probe and the gradient on
    one worker, then the shards' and directions' losses spread over the workers, each direction's loss with
    the work of moving its whole tensor.

    ``remaining`` is the share of the shards still to run (a resumed run's).

    Memory per worker: its idle baseline, the parameters (in float64 under ``precision: float64``; with a
    complex copy under complex-step) and the data once, and the largest of: the gradient (on the worker that
    computes it; the model's own working set beyond its gradient is not known here), and a direction's two
    copies of its tensor (the moved tensor, and the tangent where some element exceeds 1: the estimate
    reads no parameter, so it counts both). On the client: its baseline and the slots' indices; for an
    in-process run, a worker's memory too. The output: every checked element's values, uncompressed, and
    the metadata.
    """
    layout, scheme, taylor, promote = settings.layout, settings.scheme, settings.taylor, settings.promote
    width = len(STENCILS[scheme])
    per_index = float(width if loss_equivalents_per_index is None else loss_equivalents_per_index)
    if noise_evaluations is None:
        narrow = sum(settings.against_float64(spec.dtype) for spec in layout.tensors)
        noise = NOISE_LOSSES_PER_TENSOR * len(layout.tensors) + FLOAT32_NOISE_LOSSES * narrow
    else:
        noise = noise_evaluations
    plain = 2 * len(TAYLOR_MULTIPLES) if taylor and scheme != "complex-step" else width

    def per_direction(spec: TensorSpec) -> int:
        looked = (
            settings.second_look and not taylor and scheme != "complex-step" and not promote and spec.dtype == "float32"
        )
        return plain + (FLOAT32_DIRECTION_LOOK if looked else 0)

    n_directions = directions * sum(1 for spec in layout.tensors if spec.size)
    shard_losses = slots.size * per_index * remaining
    direction_losses = directions * sum(per_direction(spec) for spec in layout.tensors if spec.size)
    evaluations = PROBE_LOSSES + noise + math.ceil(shard_losses) + direction_losses

    complex_step = scheme == "complex-step"
    itemsize = {spec.name: 8 if promote else np.dtype(spec.dtype).itemsize for spec in layout.tensors}
    params_bytes = sum(spec.size * itemsize[spec.name] for spec in layout.tensors)
    # a direction holds its tangent and the moved tensor (complex under complex-step)
    largest = max(
        (spec.size * (itemsize[spec.name] + (16 if complex_step else itemsize[spec.name])) for spec in layout.tensors),
        default=0,
    )
    workers = max(1, workers)
    # the work around each direction's losses: the tangent drawn once, then the tensor moved per loss
    direction_work = sum(
        directions * (per_direction(spec) + 2) * spec.size * DIRECTION_ELEMENT_SECONDS for spec in layout.tensors
    )
    start = 0.0 if in_process else LOCAL_CLUSTER_SECONDS if local_cluster else CONNECT_SECONDS
    read = (params_bytes + data_bytes) / READ_BYTES_PER_SECOND
    # the gradient's g·u: one pass over each tensor per direction, on the probe's worker
    probe = (PROBE_LOSSES + noise + GRADIENT_LOSSES) * loss_seconds + directions * sum(
        spec.size for spec in layout.tensors
    ) * DIRECTION_ELEMENT_SECONDS
    spread = ((shard_losses + direction_losses) * loss_seconds + direction_work) / min(
        workers, max(1, shards + n_directions)
    )
    wall = start + read + probe + spread

    gradient = params_bytes  # in the parameters' dtype (float64 when promoted)
    direction_copies = largest if directions else 0
    complex_copy = 16 * layout.n_params if complex_step else 0  # complex-step's complex copy of the parameters
    held = data_bytes + (2 * float32_data_bytes if promote else 0)  # `precision: float64`: a float64 copy beside
    worker = WORKER_BASELINE_BYTES + params_bytes + complex_copy + held + max(gradient, direction_copies)
    index_bytes = INDEX_BYTES * slots.size if slots.checked is not None else 0
    client = CLIENT_BASELINE_BYTES + index_bytes + (worker - WORKER_BASELINE_BYTES if in_process else 0)
    output = ELEMENT_BYTES * slots.size + index_bytes + 8 * max(1, shards) + METADATA_BYTES
    return Cost(int(evaluations), wall, int(worker), int(client), int(output))
