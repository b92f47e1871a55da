"""``dual-backend exec SCRIPT.py``: a user's Keras script on either backend, or both, its results recorded.

Each backend runs the script in a process of its own (the two frameworks
never share one), with ``DUAL_BACKEND`` set, so that ``from dual_backend import
keras`` (or ``tf``) builds on it.  Every ``fit``'s History and every
``evaluate``'s result goes to ``OUT/<backend>/calls.json``
(``dual_backend.model.recorded_calls``); with both backends they are then
printed side by side with their differences, as ``run --backend both`` does
for lessons.

    dual-backend exec my_model.py --backend both --out runs/mine -- --epochs 2
"""

from __future__ import annotations

import json
import os
import runpy
import subprocess
import sys
from pathlib import Path

from dual_backend import model as front_end
from dual_backend.interrupts import atomic_write


def run_here(script: str, arguments: list[str], out: Path) -> int:
    """Run ``script`` in this process with its calls recorded to ``out/calls.json`` (written even when the
    script fails, with what it recorded until then); the script's exit code."""
    front_end.recorded_calls = []
    sys.argv = [script, *arguments]
    sys.path.insert(0, str(Path(script).resolve().parent))
    code = 0
    try:
        runpy.run_path(script, run_name="__main__")
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    finally:
        out.mkdir(parents=True, exist_ok=True)
        calls = front_end.recorded_calls
        atomic_write(out / "calls.json", lambda temporary: Path(temporary).write_text(json.dumps(calls, indent=1)))
    return code


def run_on(backend: str, script: str, arguments: list[str], out: Path) -> int:
    """The script on ``backend``, in a process of its own."""
    environment = {**os.environ, "DUAL_BACKEND": backend}
    command = [sys.executable, "-m", "dual_backend.script", script, str(out / backend), *arguments]
    return subprocess.run(command, env=environment).returncode


def last_values(call: dict) -> dict:
    """A call's numbers to compare: evaluate's result, or the last epoch of fit's History."""
    if call["call"] == "evaluate":
        return call["result"]
    return {key: values[-1] for key, values in call["history"].items() if values}


def side_by_side(keras_calls: list[dict], torch_calls: list[dict]) -> str:
    """Each recorded call of both backends on one line: the values, then |keras − torch|."""
    lines = []
    if len(keras_calls) != len(torch_calls):
        lines.append(f"The backends made different calls: {len(keras_calls)} on keras, {len(torch_calls)} on torch.")
    counts: dict[str, int] = {}
    for keras_call, torch_call in zip(keras_calls, torch_calls):
        counts[keras_call["call"]] = counts.get(keras_call["call"], 0) + 1
        keras_values, torch_values = last_values(keras_call), last_values(torch_call)
        epochs = f", {len(next(iter(keras_call['history'].values()), []))} epochs" if keras_call["call"] == "fit" \
            else ""
        lines.append(f"{keras_call['call']} {counts[keras_call['call']]} ({keras_call['model']}{epochs})")
        for key in keras_values:
            if key in torch_values:
                difference = abs(keras_values[key] - torch_values[key])
                lines.append(f"  {key:<22} keras {keras_values[key]:>10.4f}  torch {torch_values[key]:>10.4f}  "
                             f"difference {difference:.4f}")
    return "\n".join(lines)


def main(argv=None) -> int:
    """``python -m dual_backend.script SCRIPT OUT [ARGS...]``: one backend's run (``DUAL_BACKEND`` set)."""
    script, out, *arguments = sys.argv[1:] if argv is None else argv
    return run_here(script, arguments, Path(out))


if __name__ == "__main__":
    sys.exit(main())
