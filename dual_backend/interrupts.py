"""What an interrupt may and may not do: files are written whole or not at all, and SIGTERM stops
training as Ctrl-C does.

A learner presses Ctrl-C in epoch 12, a job scheduler sends SIGTERM, a laptop
lid closes.  Whatever was saved before must stay readable: every model, backup
and checkpoint is written to a temporary file beside its final name and
renamed into place (a rename within one folder is atomic), so a reader finds
either the old file or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import os
import signal
import tempfile
import threading
from pathlib import Path
from typing import Callable

from dual_backend.errors import TrainingInterrupted


def atomic_write(path, write: Callable[[str], None]) -> None:
    """Call ``write(temporary)`` to fill a temporary file in ``path``'s folder, then rename it to ``path``.

    The temporary name keeps ``path``'s suffix (Keras picks its format by suffix).
    An exception or interrupt inside ``write`` leaves ``path`` as it was and no
    temporary file behind.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(path.suffixes)  # .weights.h5 stays .weights.h5
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name.removesuffix(suffix)}.",
                                         suffix=suffix)
    os.close(handle)
    try:
        write(temporary)
        os.chmod(temporary, 0o666 & ~_umask())  # mkstemp's file is private; the final one is an ordinary file
        os.replace(temporary, path)
    finally:
        Path(temporary).unlink(missing_ok=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _interrupt_on_sigterm(signum, frame):
    raise TrainingInterrupted(signal_name="SIGTERM")


@contextlib.contextmanager
def sigterm_as_keyboard_interrupt():
    """Within the block, SIGTERM raises ``KeyboardInterrupt`` where the program is, as Ctrl-C does.

    Python's default for SIGTERM is to die on the spot, with no message; as an
    exception it unwinds like Ctrl-C, through the same handling on both
    backends (Lightning composes its own SIGTERM handler with this one).  The
    previous handler is restored afterwards.  Only the main thread can handle
    signals, so elsewhere this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _interrupt_on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
