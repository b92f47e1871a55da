"""Which Python runs a backend, and whether a GPU install holds each framework's own CUDA libraries.

On a GPU machine the two frameworks want different CUDA builds of the same
NVIDIA libraries: torch 2.14.1 brings CUDA 13's (``nvidia-cudnn-cu13``,
``nvidia-nccl-cu13``, ...) and ``tensorflow[and-cuda]`` CUDA 12's
(``nvidia-cudnn-cu12``, ``nvidia-nccl-cu12``, ...).  The package names
differ, but cuDNN and NCCL install to the same files
(``nvidia/cudnn/lib/libcudnn.so.9``, ``nvidia/nccl/lib/libnccl.so.2``): in
one environment whichever was installed last wins, ``pip check`` sees
nothing wrong, and the other framework loads a library built for another
CUDA (docs/gpu.md).  The supported GPU install is therefore one environment
per framework, and the front end runs each backend's processes with its own
interpreter (``DUAL_BACKEND_KERAS_PYTHON`` / ``DUAL_BACKEND_TORCH_PYTHON``).
"""

from __future__ import annotations

import functools
import importlib.metadata
import os
import sys
from pathlib import Path

from dual_backend.errors import DualBackendError

PYTHON_SETTINGS = {"keras": "DUAL_BACKEND_KERAS_PYTHON", "torch": "DUAL_BACKEND_TORCH_PYTHON"}
# Set by whoever starts a process with a backend's python: that process runs the backend itself.
# (Its own sys.executable need not be the path the setting names: a wrapper script, a link.)
STARTED_FOR = "DUAL_BACKEND_STARTED_FOR"


def python_for(backend: str) -> str:
    """The interpreter that runs ``backend``'s processes: the one its setting names, else this one."""
    variable = PYTHON_SETTINGS[backend]
    value = os.environ.get(variable)
    if not value:
        return sys.executable
    path = Path(value).expanduser()
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise DualBackendError(
            f"{variable}={value!r} is not an executable file. Name the python of the environment that holds "
            f"the {backend} backend (e.g. .venv-{backend}/bin/python; see docs/gpu.md), or unset {variable} "
            "to run it with this Python.")
    return os.path.abspath(path)


def runs_elsewhere(backend: str) -> bool:
    """Whether ``backend`` belongs to another interpreter than this process' (compared as paths: a
    virtual environment's python is a link to the system's, so the files themselves are the same),
    unless this process was started for it (``environment_for``)."""
    if os.environ.get(STARTED_FOR) == backend:
        python_for(backend)  # a wrong setting is still refused
        return False
    return python_for(backend) != os.path.abspath(sys.executable)


def environment_for(backend: str) -> dict:
    """The environment variables of a process started with ``python_for(backend)``."""
    return {**os.environ, STARTED_FOR: backend}


def overwritten_libraries(path: list[str] | None = None) -> list[str]:
    """Shared libraries that two installed NVIDIA packages (``nvidia-*``) both install,
    where the file on disk is not the one a package recorded: ``'nvidia/cudnn/lib/libcudnn.so.9 of
    nvidia-cudnn-cu13 (now nvidia-cudnn-cu12's)'``.  Sizes from the packages' RECORD files are
    compared (the libraries differ in size between CUDA builds; hashing them would read gigabytes).
    ``path``: where to look for installed packages (default ``sys.path``)."""
    claims: dict[str, list[tuple[str, int | None, Path]]] = {}
    for distribution in importlib.metadata.distributions(**({"path": path} if path is not None else {})):
        name = (distribution.metadata["Name"] or "").lower()
        if not name.startswith("nvidia-"):
            continue
        for file in distribution.files or []:
            if ".so" in file.name and file.parts[0] != "..":
                claims.setdefault(str(file), []).append((name, file.size, Path(file.locate())))
    found = []
    for installed, owners in sorted(claims.items()):
        if len({name for name, _, _ in owners}) < 2:
            continue
        sizes = {name: size for name, size, _ in owners}
        try:
            on_disk = owners[0][2].stat().st_size
        except OSError:
            continue
        holder = next((name for name, size in sizes.items() if size == on_disk), "another package")
        for name, size in sizes.items():
            if size is not None and size != on_disk:
                found.append(f"{installed} of {name} (now {holder}'s)")
    return found


@functools.cache
def cuda_libraries_advice(framework: str) -> str | None:
    """A warning's text when this environment's NVIDIA libraries overwrote one another, else None
    (looked up once per process: it reads every installed package's list of files)."""
    overwritten = overwritten_libraries()
    if not overwritten:
        return None
    shown = "; ".join(overwritten[:4]) + (f"; and {len(overwritten) - 4} more" if len(overwritten) > 4 else "")
    return (f"This environment holds two CUDA builds of the same NVIDIA libraries, installed to the same files, "
            f"so one framework loads the other's: {shown}. {framework} may fail or misbehave on the GPU. Install "
            "each framework in an environment of its own and point DUAL_BACKEND_KERAS_PYTHON at the keras one "
            "(docs/gpu.md).")
