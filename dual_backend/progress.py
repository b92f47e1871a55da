"""Keras-style epoch lines and a live progress bar, printed the same way by both backends.

    Epoch 1/5
    1875/1875 [==============================] - 3s 2ms/step - loss: 0.4990 - accuracy: 0.8246

On a terminal the bar is redrawn within the epoch; redraws are limited to
ten a second because on torch each redraw reads the running means off the
device.  Off a terminal (CI, a log file) only the finished line is printed.
"""

from __future__ import annotations

import sys
import time

from dual_backend.callbacks import Callback

BAR_WIDTH = 30
REDRAW_SECONDS = 0.1


def format_logs(logs) -> str:
    return " - ".join(f"{key}: {float(value):.4f}" for key, value in logs.items())


def bar(done: int, total: int) -> str:
    filled = BAR_WIDTH * done // max(total, 1)
    arrow = ">" if done < total else ""
    return "[" + "=" * filled + arrow + "." * (BAR_WIDTH - filled - len(arrow)) + "]"


class ProgressBar(Callback):
    every_batch = False  # a redraw samples the running logs; it need not see every step
    chief_only = True  # one process prints

    def __init__(self, stream=None):
        super().__init__()
        self.stream = stream or sys.stdout
        self.live = self.stream.isatty()

    def on_epoch_begin(self, epoch, logs=None):
        print(f"Epoch {epoch + 1}/{self.params['epochs']}", file=self.stream, flush=True)
        self._start = self._last_draw = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        if not self.live:
            return
        now = time.perf_counter()
        if now - self._last_draw < REDRAW_SECONDS:
            return
        self._last_draw = now
        steps, done = self.params["steps"], batch + 1
        eta = (now - self._start) / done * (steps - done)
        line = f"{done:>{len(str(steps))}}/{steps} {bar(done, steps)} - ETA: {eta:.0f}s - {format_logs(logs)}"
        self.stream.write("\r" + line)
        self.stream.flush()

    def on_epoch_end(self, epoch, logs=None):
        line = finished_line(self.params["steps"], time.perf_counter() - self._start, logs)
        self.stream.write(("\r" if self.live else "") + line + "\n")
        self.stream.flush()


def finished_line(steps: int | None, seconds: float, logs: dict | None = None) -> str:
    """Keras' line for a finished epoch, ``evaluate`` or ``predict``: steps, bar, seconds, time per
    step, then the logs if any (``steps`` None, a pipeline of unknown length: the logs alone)."""
    shown = f" - {format_logs(logs)}" if logs else ""
    if not steps:
        return shown[3:]
    per_step = seconds / steps
    step_time = f"{per_step * 1000:.0f}ms/step" if per_step >= 1e-3 else f"{per_step * 1e6:.0f}us/step"
    return f"{steps}/{steps} {bar(steps, steps)} - {seconds:.0f}s {step_time}{shown}"
