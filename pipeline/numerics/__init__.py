"""The numerics: pure numpy, no Dask, no Zarr, no I/O.

``fd`` (steps, stencils, estimates, the loss's noise), ``tolerance`` (per-element
verdicts), ``layout`` (the flat index space), ``plan`` (shards and sampled
elements), ``problem`` (a check's settings, and its model, parameters and data loaded as arrays),
``probe`` (the model checked at θ, the loss's noise), ``shards`` (centred differences over a
shard of indices), ``directions`` (random directions through a tensor), ``together`` (the run's
kinks moved together, once every shard is done), ``refine`` (the second
look, the Taylor test),
``reduce`` and ``verdict`` (partial sums to the verdict), ``diagnose`` (a wrong
tensor's bug in words).
"""
