"""Generated inputs for fit, evaluate and predict.

Hypothesis draws arrays of random shapes, dtypes and values (NaN, infinity,
huge numbers, empty arrays, strings, objects, complex numbers) and random
batch sizes and epoch counts, and calls a small lesson with them on both
backends.  Every call must end, within a time bound, in a valid result or in
the project's own ``DualBackendError``: never a hang, never a raw TensorFlow,
torch or numpy exception.
"""

import signal
from contextlib import contextmanager
from datetime import timedelta

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import dual_backend
from dual_backend.errors import DualBackendError
from dual_backend.model import History

HANG_SECONDS = 60  # one call of a tiny model on a few samples takes well under a second
# Hypothesis' deadline fails a call slower than this; generous, as other work may share the CPU.
DEADLINE = timedelta(seconds=30)
EXAMPLES = 40  # per backend: about 10-20 s each on 2 CPU cores

NUMBER_DTYPES = [np.dtype(d) for d in ("bool", "uint8", "int32", "int64", "float16", "float32", "float64")]
OTHER_DTYPES = [np.dtype(d) for d in ("complex64", "<U2", "datetime64[s]", "object")]
WRONG_SHAPES = st.one_of(
    st.integers(1, 6).map(lambda n: (n, 784)),
    st.integers(1, 6).map(lambda n: (n, 28, 28, 1)),
    st.just((28, 28)),
    st.just((0, 28, 28)),
    hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=6),
)
ODD_FLOATS = st.sampled_from([np.nan, np.inf, -np.inf, 1e300, -1e300, 3e38, 1e-310, -0.0])


def mostly(right, wrong):
    """``right`` seven times in ten, so that most calls get as far as the framework."""
    return st.integers(0, 9).flatmap(lambda k: right if k < 7 else wrong)


def values_for(dtype):
    """Element values the dtype can hold, with NaN, infinities and huge numbers among the floats."""
    if dtype.kind == "f":
        ordinary = st.floats(-1e3, 1e3, width=min(32, 8 * dtype.itemsize))
        return mostly(ordinary, ODD_FLOATS if dtype.itemsize == 8 else st.sampled_from([np.nan, np.inf]))
    if dtype.kind == "c":
        return st.complex_numbers(max_magnitude=10, allow_nan=False, allow_infinity=False, width=64)
    return None  # hypothesis' default for the dtype


@st.composite
def arrays(draw, shape):
    """An array of ``shape`` (a tuple or a strategy), mostly of numbers, sometimes of something else."""
    dtype = draw(mostly(st.sampled_from(NUMBER_DTYPES), st.sampled_from(OTHER_DTYPES)))
    if dtype == object:
        return np.array(draw(st.lists(st.one_of(st.none(), st.integers(0, 9), st.text(max_size=2)),
                                      min_size=1, max_size=4)), dtype=object)
    return draw(hnp.arrays(dtype, shape, elements=values_for(dtype)))


@st.composite
def calls(draw):
    """One call: the method, x, y and the batch size and epochs, each mostly right and sometimes wrong."""
    shape = draw(mostly(st.integers(1, 6).map(lambda n: (n, 28, 28)), WRONG_SHAPES))
    x = draw(arrays(shape))
    samples = len(x) if x.ndim else 1
    labels = hnp.arrays(np.int64, (samples,), elements=st.integers(0, 9))
    wrong_labels = st.one_of(
        hnp.arrays(np.int64, (samples,), elements=st.integers(-2, 12)),
        arrays(st.sampled_from([(samples,), (samples, 1), (samples, 10), (samples, 0), (max(samples - 1, 0),), ()])),
        st.none(),
    )
    return {
        "method": draw(st.sampled_from(["fit", "evaluate", "predict"])),
        "x": x, "y": draw(mostly(labels, wrong_labels)),
        "batch_size": draw(mostly(st.sampled_from([None, 1, 3, 32]), st.sampled_from([0, -1, 2.5, True, "8"]))),
        "epochs": draw(mostly(st.sampled_from([1, 2]), st.sampled_from([0, -1, 1.5]))),
    }


@contextmanager
def time_limit(seconds):
    def hang(signum, frame):
        raise TimeoutError(f"a call took more than {seconds} s")

    previous = signal.signal(signal.SIGALRM, hang)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def call(model, method, x, y, batch_size, epochs):
    if method == "fit":
        return model.fit(x, y, batch_size=batch_size, epochs=epochs, verbose=0)
    if method == "evaluate":
        return model.evaluate(x, y, batch_size=batch_size)
    return model.predict(x, batch_size=batch_size)


def assert_valid(result, method, x, epochs):
    if method == "fit":
        assert isinstance(result, History) and set(result.history) <= {"loss", "accuracy"}
        assert all(len(values) == epochs for values in result.history.values())
    elif method == "evaluate":
        assert isinstance(result, list) and len(result) == 2 and all(isinstance(v, float) for v in result)
    else:
        assert isinstance(result, np.ndarray) and result.shape == (len(x), 10)


@pytest.fixture(scope="module", params=["keras", "torch"])
def tiny_model(request):
    return dual_backend.build("fashion_mlp", backend=request.param, device="cpu", hidden_units=8)


@settings(max_examples=EXAMPLES, deadline=DEADLINE, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(arguments=calls())
def test_any_generated_call_ends_in_a_result_or_the_projects_error(tiny_model, arguments):
    with time_limit(HANG_SECONDS):
        try:
            result = call(tiny_model, **arguments)
        except DualBackendError as error:
            event(f"refused: {str(error)[:40]}")
            return
    event(f"{arguments['method']} returned")
    assert_valid(result, arguments["method"], arguments["x"], arguments["epochs"])
