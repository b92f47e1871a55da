"""What the keras backend sets in its process, and when (mirror of ``torch_impl/process.py``).

- before TensorFlow starts (``before_framework_starts``, called by the front
  end before it imports ``keras_ref.backend``): TensorFlow's C++ log level;
- while TensorFlow starts (``start_up_lines_hidden``): the lines it writes
  before its logging reads that level.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile

LOG_LEVEL = "TF_CPP_MIN_LOG_LEVEL"
# TensorFlow's start-up chatter is not the lesson: on a machine without a GPU it reports, as an
# error, that cuInit failed, though nothing is wrong.  A level the user set is kept.
DEFAULT_LOG_LEVEL = "3"
SEVERITIES = "IWEF"  # TensorFlow's levels 0-3: info, warning, error, fatal
# A line of TensorFlow's C++ log: absl's "E0000 00:00:1796017609.633709    3968 file.cc:52] ..."
# or the older "2025-09-17 14:44:05.157831: I external/.../file.cc:32] ...".
LOG_LINE = re.compile(r"^(?:([IWEF])\d{4} [\d:.]+ +\d+ |[\d-]+ [\d:.]+: ([IWEF]) )\S+:\d+\] ")
ABSL_NOTICE = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"


def before_framework_starts() -> None:
    """TensorFlow's C++ log level, unless the user chose one (``TF_CPP_MIN_LOG_LEVEL``)."""
    os.environ.setdefault(LOG_LEVEL, DEFAULT_LOG_LEVEL)


def log_level() -> int:
    try:
        return int(os.environ.get(LOG_LEVEL, "0"))
    except ValueError:
        return 0


def below_log_level(line: str, level: int) -> bool:
    """Whether ``line`` is one of TensorFlow's C++ log lines that ``level`` hides."""
    if line.rstrip("\n") == ABSL_NOTICE:
        return level >= 1
    found = LOG_LINE.match(line)
    return bool(found) and SEVERITIES.index(found.group(1) or found.group(2)) < level


@contextlib.contextmanager
def start_up_lines_hidden():
    """Run the block with the process's stderr held back, then write it out without the lines of
    TensorFlow's C++ log below ``TF_CPP_MIN_LOG_LEVEL``.

    TensorFlow writes some lines before its logging has read the level (absl's
    notice says so: "All log messages before absl::InitializeLog() is called
    are written to STDERR"), as it loads and as it first looks for GPUs:
    that it found no CUDA driver, that cuInit failed.  They come from C++,
    so they are held back at the file descriptor, not in ``sys.stderr``."""
    level = log_level()
    if level <= 0:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            lines = held.read().decode(errors="replace").splitlines(keepends=True)
            sys.stderr.write("".join(line for line in lines if not below_log_level(line, level)))
            sys.stderr.flush()
