"""Start a dask-jobqueue SLURM cluster for gradcheck and keep it up until interrupted.

    pip install dask-jobqueue
    python deploy/slurm/cluster.py --jobs 4 --scheduler-file ~/gradcheck-scheduler.json

Settings come from Dask's configuration (deploy/slurm/jobqueue.yaml). Checks then run
with ``gradcheck run CONFIG --scheduler-file ~/gradcheck-scheduler.json``.
"""

from __future__ import annotations

import argparse
import time

from dask_jobqueue import SLURMCluster
from distributed import Client


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1, help="SLURM jobs to submit (each holds `processes` workers)")
    parser.add_argument("--scheduler-file", required=True, help="where to write the scheduler's address")
    args = parser.parse_args()
    with SLURMCluster() as cluster, Client(cluster) as client:
        cluster.scale(jobs=args.jobs)
        client.write_scheduler_file(args.scheduler_file)
        print(f"scheduler {cluster.scheduler_address}; written to {args.scheduler_file}; Ctrl-C stops it")
        while True:
            time.sleep(60)


if __name__ == "__main__":
    main()
