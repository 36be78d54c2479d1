"""deploy/: every manifest parses, and every command it runs exists with those options.

`gradcheck` command lines are parsed by the CLI's own parser; `dask scheduler` and
`dask worker` options are looked up in those commands' `--help`.
"""

from __future__ import annotations

import ast
import functools
import re
import shlex
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeline.cli import _parser

from .clusters import DASK
from .conftest import REPO

DEPLOY = REPO / "deploy"
YAMLS = sorted(DEPLOY.rglob("*.yaml")) + sorted(DEPLOY.rglob("*.yml"))
PROGRAMS = ("gradcheck", "dask")


def _split_shell(script: str) -> Iterator[list[str]]:
    """The simple commands of a shell script (comment lines dropped): split on newlines, `&&`, `;` and `&`."""
    code = "\n".join(line for line in script.splitlines() if not line.lstrip().startswith("#"))
    for part in re.split(r"\n|&&|;|(?<![&>])&(?!&)", code):
        if part.strip():
            yield shlex.split(part, comments=True)


def _commands_in(argv: list[str]) -> Iterator[list[str]]:
    """``argv`` as one command, or the commands of ``sh -c SCRIPT``; from the program's name on."""
    if len(argv) >= 3 and Path(argv[0]).name in ("sh", "bash") and argv[1] == "-c":
        for command in _split_shell(argv[2]):
            yield from _commands_in(command)
        return
    for i, token in enumerate(argv):  # `srun ... dask worker`, `/opt/.venv/bin/gradcheck ...`
        if Path(token).name in PROGRAMS:
            yield [Path(token).name, *argv[i + 1 :]]
            return


def _walk(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def _yaml_commands(path: Path) -> Iterator[list[str]]:
    for document in yaml.safe_load_all(path.read_text()):
        for node in _walk(document):
            argv: list[str] = []
            for key in ("command", "args"):  # Kubernetes containers and compose services
                value = node.get(key)
                if isinstance(value, str):
                    value = shlex.split(value)
                if isinstance(value, list) and all(isinstance(v, str) for v in value):
                    argv += value
            if argv:
                yield from _commands_in(argv)


def _all_commands() -> list[tuple[str, list[str]]]:
    found: list[tuple[str, list[str]]] = []
    for path in YAMLS:
        found += [(str(path.relative_to(REPO)), c) for c in _yaml_commands(path)]
    for path in sorted(DEPLOY.rglob("*.service")):
        for line in path.read_text().splitlines():
            if line.startswith(("ExecStart=", "ExecStopPost=")):
                found += [(str(path.relative_to(REPO)), c) for c in _commands_in(shlex.split(line.split("=", 1)[1]))]
    for path in sorted(DEPLOY.rglob("*.sbatch")):
        for command in _split_shell(path.read_text()):
            found += [(str(path.relative_to(REPO)), c) for c in _commands_in(command)]
    for path in sorted(DEPLOY.rglob("Dockerfile")):
        for line in path.read_text().splitlines():
            if line.startswith("CMD "):
                found += [(str(path.relative_to(REPO)), c) for c in _commands_in(yaml.safe_load(line[4:]))]
    return found


COMMANDS = _all_commands()


def test_every_manifest_parses_and_is_what_it_says() -> None:
    kinds = {}
    for path in YAMLS:
        documents = list(yaml.safe_load_all(path.read_text()))
        assert documents, path
        assert all(isinstance(d, dict) for d in documents), path
        for d in documents:
            if "kind" in d:
                kinds[d["kind"]] = path.name
    assert kinds == {"DaskCluster": "daskcluster.yaml", "DaskJob": "daskjob.yaml", "CronJob": "nightly-cronjob.yaml"}
    compose = yaml.safe_load((DEPLOY / "docker" / "docker-compose.yml").read_text())
    assert set(compose["services"]) == {"scheduler", "worker", "check"}
    helm = yaml.safe_load((DEPLOY / "helm" / "values.yaml").read_text())
    assert helm["worker"]["image"]["repository"] == helm["scheduler"]["image"]["repository"] == "gradcheck-pipeline"
    jobqueue = yaml.safe_load((DEPLOY / "slurm" / "jobqueue.yaml").read_text())
    assert jobqueue["jobqueue"]["slurm"]["cores"] == jobqueue["jobqueue"]["slurm"]["processes"]  # 1 thread each
    ast.parse((DEPLOY / "slurm" / "cluster.py").read_text())
    timer = (DEPLOY / "systemd" / "gradcheck-nightly.timer").read_text()
    assert "OnCalendar=" in timer


def test_the_image_installs_the_project_from_files_that_exist() -> None:
    dockerfile = (DEPLOY / "docker" / "Dockerfile").read_text()
    assert dockerfile.startswith("# ")
    assert "\nFROM python:3.11" in dockerfile
    for line in dockerfile.splitlines():
        if line.startswith("COPY "):
            for source in line.split()[1:-1]:
                assert (REPO / source).exists(), source
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert re.search(r'pip install "\.\[s3\]"', dockerfile)
    assert "s3" in extras
    compose = yaml.safe_load((DEPLOY / "docker" / "docker-compose.yml").read_text())
    for service in compose["services"].values():
        assert (DEPLOY / "docker" / service["build"]["context"] / service["build"]["dockerfile"]).is_file()


def test_the_manifests_run_both_programs() -> None:
    programs = {c[0] for _, c in COMMANDS}
    assert programs == set(PROGRAMS)
    assert len(COMMANDS) >= 15


@pytest.mark.parametrize(
    ("where", "command"),
    [pytest.param(w, c, id=f"{w}: {' '.join(c)[:60]}") for w, c in COMMANDS if c[0] == "gradcheck"],
)
def test_each_gradcheck_command_exists_with_its_options(where: str, command: list[str]) -> None:
    try:
        _parser().parse_args(command[1:])
    except SystemExit as e:  # --help exits 0, having printed what it was asked for
        if e.code == 0:
            return
        pytest.fail(f"{where}: `{' '.join(command)}` is not a valid gradcheck command (exit {e.code})")


@functools.cache
def _dask_help(subcommand: str) -> str:
    return subprocess.run([DASK, subcommand, "--help"], capture_output=True, text=True, check=True).stdout


@pytest.mark.parametrize(
    ("where", "command"),
    [pytest.param(w, c, id=f"{w}: {' '.join(c)[:60]}") for w, c in COMMANDS if c[0] == "dask"],
)
def test_each_dask_command_exists_with_its_options(where: str, command: list[str]) -> None:
    assert command[1] in ("scheduler", "worker"), f"{where}: dask {command[1]}"
    options = {token.split("=")[0] for token in command[2:] if token.startswith("--")}
    known = set(re.findall(r"--[a-z][a-z-]*", _dask_help(command[1])))
    assert options <= known, f"{where}: unknown options {sorted(options - known)} of dask {command[1]}"


#: What the dask Helm chart's deployments run (dask/helm-chart's templates: the commands, and their options).
HELM_CHART_RUNS = {
    "dask-scheduler": ("scheduler", ["--port=8786", "--dashboard-address=:8787"]),
    "dask-worker": (
        "worker",
        ["--nthreads", "--memory-limit", "--no-dashboard", "--dashboard-address", "--worker-port"],
    ),
}


def test_the_image_has_the_commands_the_helm_chart_runs() -> None:
    # review 126: the chart runs `dask-scheduler` and `dask-worker`, which distributed no longer ships
    dockerfile = (DEPLOY / "docker" / "Dockerfile").read_text()
    for program, (subcommand, options) in HELM_CHART_RUNS.items():
        assert f'exec dask {subcommand} "$@"\\n\' > /usr/local/bin/{program}' in dockerfile, program
        known = set(re.findall(r"--[a-z][a-z-]*", _dask_help(subcommand)))
        assert {option.split("=")[0] for option in options} <= known, program
    assert "chmod 755 /usr/local/bin/dask-scheduler /usr/local/bin/dask-worker" in dockerfile
