"""Where a check's steps run: ``driver`` (the steps, whatever runs them), ``inline`` (this
process) and ``dask`` (tasks on a cluster), ``cluster`` (starting or reaching one) and
``jobs`` (checks detached onto an existing cluster)."""
