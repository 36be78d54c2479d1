"""The numerics: pure numpy, no Dask, no Zarr, no I/O.

``fd`` (steps, stencils, estimates, the loss's noise), ``tolerance`` (per-element
verdicts), ``layout`` (the flat index space), ``plan`` (shards and sampled
elements), ``core`` (a check's steps on loaded arrays: probe, shards, directions),
``reduce`` and ``verdict`` (partial sums to the verdict), ``diagnose`` (a wrong
tensor's bug in words).
"""
