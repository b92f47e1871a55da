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
