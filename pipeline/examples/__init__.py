"""Built-in example problems, written out by ``gradcheck example NAME DIR``."""

from __future__ import annotations

import functools
import importlib
import os
from collections.abc import Callable

from ..errors import GradcheckError, OutputExistsError
from . import seed_mlp

__all__ = ["EXAMPLES", "write_example"]

_MARKER = "gradcheck_example"

_CONFIG = """\
# The seed's network (gradcheck example seed-mlp), {what}.
# Run it with: gradcheck run {name}.yaml
model: pipeline.examples.seed_mlp:{name}
params: params.zarr
data: data.zarr
output: {name}-output.zarr
# The seed's settings, named: without these three lines the check takes the most
# accurate defaults (scheme richardson, epsilon auto, per-element error bars).
scheme: central    # the seed's formula, (J(θ+ε) − J(θ−ε)) / 2ε
epsilon: 1.0e-7    # the seed's step
threshold: 2.0e-7  # the seed's threshold
"""


def _refuse_foreign(path: str, expected_text: str | None, name: str) -> None:
    """Refuse to replace anything at ``path`` that this example did not write."""
    if not os.path.exists(path):
        return
    import zarr  # only writing an example needs it: the example models are imported without it

    try:
        if expected_text is not None:
            with open(path, encoding="utf-8") as f:
                if f.read() == expected_text:
                    return
        elif zarr.open_group(store=path, mode="r").attrs.get(_MARKER) == name:
            return
    except Exception:
        pass  # unreadable, a folder where a file should be, not Zarr: not ours
    raise OutputExistsError(
        f"'{path}' exists and was not written by `gradcheck example {name}`; choose another folder."
    )


def write_seed_mlp(folder: str) -> list[str]:
    """Write the seed network's stores and its two configs; return the configs' paths."""
    name = "seed-mlp"
    configs = {
        "correct": _CONFIG.format(name="correct", what="with its correct backward pass: this check passes"),
        "planted": _CONFIG.format(
            name="planted", what="with the exercise's planted mistakes (dW2 * 2, db1 * 4): this check fails"
        ),
    }
    targets = {os.path.join(folder, f"{k}.yaml"): text for k, text in configs.items()}
    stores_ = {os.path.join(folder, s): None for s in ("params.zarr", "data.zarr")}
    for path, text in {**targets, **stores_}.items():
        _refuse_foreign(path, text, name)
    from ..storage.inputs import write_group

    os.makedirs(folder, exist_ok=True)
    params, data = seed_mlp.problem()
    write_group(os.path.join(folder, "params.zarr"), params, {"order": list(seed_mlp.ORDER), _MARKER: name})
    write_group(os.path.join(folder, "data.zarr"), data, {_MARKER: name})
    for path, text in targets.items():
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
    return list(targets)


_FRAMEWORK_CONFIG = """\
# gradcheck example {name}: the model in model.py, {what}.
# Run it with: gradcheck run {which}.yaml
model: model.py:{which}
params: params.zarr
data: data.zarr
output: {which}-output.zarr
"""

#: The framework examples: the module written out as model.py, and the extra that installs its framework.
_FRAMEWORKS = {"torch-custom-op": ("torch_custom_op", "torch"), "jax-custom-vjp": ("jax_custom_vjp", "jax")}


def write_framework_example(name: str, folder: str) -> list[str]:
    """Write a framework example (its module as ``model.py``, its stores, its two configs); return the configs."""
    module_name, extra = _FRAMEWORKS[name]
    try:
        module = importlib.import_module(f"{__name__}.{module_name}")
    except ModuleNotFoundError as e:
        raise GradcheckError(f"The {name} example needs {e.name}: pip install 'gradcheck-pipeline[{extra}]'.") from None
    what = {
        "correct": "with its correct backward pass: this check passes",
        "planted": f"with a planted mistake in its backward pass: this check fails and names {module.PLANTED_TENSOR}",
    }
    targets = {
        os.path.join(folder, f"{which}.yaml"): _FRAMEWORK_CONFIG.format(name=name, what=text, which=which)
        for which, text in what.items()
    }
    with open(module.__file__, encoding="utf-8") as f:  # type: ignore[arg-type]
        targets[os.path.join(folder, "model.py")] = f.read()
    stores_ = {os.path.join(folder, s): None for s in ("params.zarr", "data.zarr")}
    for path, text in {**targets, **stores_}.items():
        _refuse_foreign(path, text, name)
    from ..storage.inputs import write_group

    os.makedirs(folder, exist_ok=True)
    params = module.correct.params
    write_group(os.path.join(folder, "params.zarr"), params, {"order": list(params), _MARKER: name})
    write_group(os.path.join(folder, "data.zarr"), module.data(), {_MARKER: name})
    for path, text in targets.items():
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
    return [path for path in targets if path.endswith(".yaml")]


EXAMPLES: dict[str, Callable[[str], list[str]]] = {
    "seed-mlp": write_seed_mlp,
    **{name: functools.partial(write_framework_example, name) for name in _FRAMEWORKS},
}


def write_example(name: str, folder: str) -> list[str]:
    """Write example ``name`` into ``folder``; return the paths of its configs."""
    if name not in EXAMPLES:
        raise GradcheckError(f"Unknown example {name!r}. Expected one of: {', '.join(EXAMPLES)}.")
    if "://" in folder:  # (its configs are files a run reads from a local disk: review 126 found them under ./s3:/)
        raise GradcheckError(
            f"`gradcheck example` writes a folder on a local disk, not '{folder}': write it locally, then copy its "
            "stores there and point `params`, `data` and `output` at them."
        )
    return EXAMPLES[name](folder)
