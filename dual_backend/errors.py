"""The project's own exceptions.

Every message says what was wrong, what was expected and what to do, so a
learner never has to read a TensorFlow or torch traceback to find a mistake
in their own data or model.
"""


class DualBackendError(ValueError):
    """A mistake the user can fix: bad input, an unknown name, a missing file."""


class DataError(DualBackendError):
    """A data set is missing, truncated, corrupted or of the wrong format."""


class DataWarning(UserWarning):
    """Something in the data was skipped, and said so; training goes on without it."""


def refused_code(path, what: str, detail: str = "") -> DualBackendError:
    """The error for a file that would run Python code when read: a model, backup or data file
    is tensors and plain values, and one that asks for more is not loaded at all."""
    return DualBackendError(
        f"{path} is not {what}: it asks to run Python code when loaded{detail}, so it was not loaded. "
        "Load only files written by dual-backend, or from sources you trust.")


class TrainingDiverged(DualBackendError):
    """The loss became NaN or infinite and training stopped there (Keras' TerminateOnNaN)."""


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped by Ctrl-C (``SIGINT``) or ``SIGTERM``; the message says what was kept.

    A ``KeyboardInterrupt``, so that code which already handles Ctrl-C handles it too.
    It happened in ``epoch`` (counted from 1) of ``epochs``; ``backup_path`` is
    the backup holding the first ``epochs_kept`` epochs, or None.
    """

    def __init__(self, message: str = "", signal_name: str = "SIGINT", epoch: int = 0, epochs: int = 0,
                 backup_path=None, epochs_kept: int = 0):
        super().__init__(message)
        self.signal_name, self.epoch, self.epochs = signal_name, epoch, epochs
        self.backup_path, self.epochs_kept = backup_path, epochs_kept

    @property
    def cause(self) -> str:
        return "Ctrl-C" if self.signal_name == "SIGINT" else self.signal_name
