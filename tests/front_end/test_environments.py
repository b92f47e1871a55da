"""A GPU machine's two environments (docs/gpu.md): each backend's processes run with the python its
setting names, a wrong setting is refused clearly, and NVIDIA libraries that two packages install to
the same file are found."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from dual_backend import bench, cli, environments
from dual_backend.model import SpeedUps


def logging_python(folder: Path, name: str) -> Path:
    """An executable standing in for another environment's python: it notes its arguments, then runs
    this one."""
    script = folder / name
    script.write_text(f'#!/bin/sh\necho "$@" >> "{folder / (name + ".log")}"\nexec "{sys.executable}" "$@"\n')
    script.chmod(0o755)
    return script


def test_each_backend_runs_with_the_python_its_setting_names(tmp_path):
    keras_python = logging_python(tmp_path, "keras-python")
    env = {**os.environ, "DUAL_BACKEND_KERAS_PYTHON": str(keras_python)}
    env.pop("DUAL_BACKEND_TORCH_PYTHON", None)
    command = [sys.executable, "-m", "dual_backend.cli", "run", "hello_world", "--epochs", "1", "--device", "cpu"]
    both = subprocess.run([*command, "--backend", "both", "--out", str(tmp_path / "both")], env=env,
                          capture_output=True, text=True, timeout=300)
    assert both.returncode == 0, both.stderr[-2000:]
    assert all((tmp_path / "both" / backend / "metrics.json").is_file() for backend in ("keras", "torch"))
    # A single keras run from the torch environment goes to the keras one too.
    alone = subprocess.run([*command, "--backend", "keras", "--out", str(tmp_path / "alone")], env=env,
                           capture_output=True, text=True, timeout=300)
    assert alone.returncode == 0, alone.stderr[-2000:]
    assert (tmp_path / "alone" / "keras" / "metrics.json").is_file()
    calls = (tmp_path / "keras-python.log").read_text().splitlines()
    assert len(calls) == 2 and all("--backend keras" in call for call in calls), calls


def test_a_setting_that_names_no_python_is_refused_with_what_to_do(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DUAL_BACKEND_KERAS_PYTHON", str(tmp_path / "no-such-python"))
    assert cli.main(["run", "hello_world", "--backend", "keras", "--out", str(tmp_path / "out")]) == 1
    error = capsys.readouterr().err
    assert "DUAL_BACKEND_KERAS_PYTHON" in error and "is not an executable file" in error and "docs/gpu.md" in error
    assert not (tmp_path / "out").exists()


def test_bench_runs_each_system_with_its_backends_python(tmp_path, monkeypatch):
    keras_python, torch_python = logging_python(tmp_path, "keras-python"), logging_python(tmp_path, "torch-python")
    monkeypatch.setenv("DUAL_BACKEND_KERAS_PYTHON", str(keras_python))
    monkeypatch.setenv("DUAL_BACKEND_TORCH_PYTHON", str(torch_python))
    interpreters = {system: bench._worker_command(system, "fashion_mlp", None, 2, "cpu", "quick", 0, SpeedUps())[0]
                    for system in bench.SYSTEMS}
    assert interpreters == {"keras": str(keras_python), "torch": str(torch_python),
                            "keras-on-torch": str(torch_python), "plain-torch": str(torch_python)}


def fake_package(site: Path, name: str, files: dict[str, int]) -> None:
    """An installed package as pip leaves it: a dist-info folder whose RECORD lists files and sizes."""
    info = site / f"{name.replace('-', '_')}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (info / "RECORD").write_text("".join(f"{path},sha256=x,{size}\n" for path, size in files.items())
                                 + f"{info.name}/RECORD,,\n")


def test_libraries_two_packages_install_to_the_same_file_are_named(tmp_path):
    site = tmp_path / "site-packages"
    # What `pip install -e ".[all,gpu]"` does: cuDNN for CUDA 13 (torch's), then for CUDA 12
    # (TensorFlow's), to the same path; the last one written is on disk.
    fake_package(site, "nvidia-cudnn-cu13", {"nvidia/cudnn/lib/libcudnn.so.9": 129240, "nvidia/cudnn/__init__.py": 0})
    fake_package(site, "nvidia-cudnn-cu12", {"nvidia/cudnn/lib/libcudnn.so.9": 137432, "nvidia/cudnn/__init__.py": 0})
    fake_package(site, "nvidia-cublas", {"nvidia/cu13/lib/libcublas.so.13": 10})
    (site / "nvidia/cudnn/lib").mkdir(parents=True)
    (site / "nvidia/cudnn/lib/libcudnn.so.9").write_bytes(b"\0" * 137432)
    (site / "nvidia/cudnn/__init__.py").write_text("")
    assert environments.overwritten_libraries(path=[str(site)]) == [
        "nvidia/cudnn/lib/libcudnn.so.9 of nvidia-cudnn-cu13 (now nvidia-cudnn-cu12's)"]


def test_this_environment_holds_one_build_of_each_library():
    # The project's own install (.[all]) brings torch's CUDA libraries alone; TensorFlow's CUDA
    # libraries (the gpu extra) belong in an environment of their own.
    assert environments.overwritten_libraries() == []
    assert environments.cuda_libraries_advice("torch") is None


@pytest.mark.parametrize("backend", ["keras", "torch"])
def test_without_a_setting_a_backend_runs_with_this_python(backend, monkeypatch):
    monkeypatch.delenv(environments.PYTHON_SETTINGS[backend], raising=False)
    assert environments.python_for(backend) == sys.executable and not environments.runs_elsewhere(backend)
