"""The convolution lesson: both backends give the note's loop pixel for pixel, orientation included."""

import importlib
import json

import numpy as np
import pytest

import dual_backend
from dual_backend import convolution, data, lessons
from dual_backend.errors import DualBackendError
from tests.conftest import BACKENDS

FILTER_NAMES = list(convolution.FILTERS)


def program(backend: str):
    return importlib.import_module(f"{dual_backend.BACKENDS[backend]}.convolution")


@pytest.fixture(scope="module")
def ascent() -> np.ndarray:
    return data.load_ascent()


@pytest.fixture(scope="module")
def course_results(ascent) -> dict:
    """The note's loops, run once per filter (weight 1) and shared by the tests: name -> (filtered, pooled)."""
    results = {}
    for name, filter in convolution.FILTERS.items():
        filtered = convolution.course_filter_image(ascent, filter, 1)
        results[name] = filtered, convolution.course_max_pool(filtered)
    return results


@pytest.fixture(scope="module")
def asymmetric() -> np.ndarray:
    """A small image whose every pixel differs and whose rows differ from its columns, so a transpose shows."""
    return np.random.default_rng(0).integers(0, 256, size=(12, 12), dtype=np.uint8)


@pytest.mark.parametrize("name", FILTER_NAMES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_filtered_image_equals_the_course_loop(ascent, course_results, backend, name):
    filtered = program(backend).filter_image(ascent, convolution.FILTERS[name], 1)
    np.testing.assert_array_equal(filtered, course_results[name][0])


@pytest.mark.parametrize("name", FILTER_NAMES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_pooled_image_equals_the_course_loop(course_results, backend, name):
    pooled = program(backend).max_pool(course_results[name][0])
    np.testing.assert_array_equal(pooled, course_results[name][1])


@pytest.mark.parametrize("backend", BACKENDS)
def test_fractional_weight_is_cut_off_as_the_course_loop_cuts_it(ascent, backend):
    filter = [[1, 1, 1], [1, 2, 1], [1, 1, 1]]  # adds up to 10: the note's example for a weight of 0.1
    filtered = program(backend).filter_image(ascent, filter, 0.1)
    np.testing.assert_array_equal(filtered, convolution.course_filter_image(ascent, filter, 0.1))


@pytest.mark.parametrize("backend", BACKENDS)
def test_filtering_keeps_the_one_pixel_border(ascent, backend):
    filtered = program(backend).filter_image(ascent, convolution.FILTERS["edge"], 1)
    for border in (np.s_[0, :], np.s_[-1, :], np.s_[:, 0], np.s_[:, -1]):
        np.testing.assert_array_equal(filtered[border], ascent[border])


@pytest.mark.parametrize("backend", BACKENDS)
def test_filtered_is_512x512_and_pooled_is_256x256_uint8(ascent, backend):
    filtered = program(backend).filter_image(ascent, convolution.FILTERS["horizontal"], 1)
    pooled = program(backend).max_pool(filtered)
    assert (filtered.shape, filtered.dtype) == ((512, 512), np.uint8)
    assert (pooled.shape, pooled.dtype) == ((256, 256), np.uint8)


@pytest.mark.parametrize("backend", BACKENDS)
def test_backends_apply_the_filter_in_the_course_loops_orientation(asymmetric, backend):
    filter = [[0, 1, 2], [-1, 0, 3], [-2, -3, 1]]  # neither symmetric nor antisymmetric
    expected = convolution.course_filter_image(asymmetric, filter, 1)
    transposed = convolution.course_filter_image(asymmetric, np.transpose(filter).tolist(), 1)
    assert not np.array_equal(expected, transposed)
    np.testing.assert_array_equal(program(backend).filter_image(asymmetric, filter, 1), expected)


def test_course_loop_multiplies_filter_row_a_column_b_with_pixel_x_plus_b_y_plus_a():
    image = np.zeros((3, 3), dtype=np.uint8)
    image[2, 1] = 10  # i[x+1, y] for the centre: b = 2, a = 1
    filter = [[0, 0, 0], [0, 0, 7], [0, 0, 0]]  # f[1][2]
    assert convolution.course_filter_image(image, filter, 1)[1, 1] == 70


@pytest.mark.parametrize("backend", BACKENDS)
def test_run_writes_the_images_the_metrics_and_the_figure(tmp_path, backend):
    metrics = convolution.run(lessons.recipe("convolution", "edge"), backend, out=tmp_path, verbose=0)
    folder = tmp_path / backend
    written = json.loads((folder / "metrics.json").read_text())
    assert written == metrics
    assert (metrics["filter"], metrics["equal_to_loop"]) == ("edge", {"filtered": True, "pooled": True})
    assert metrics["max_difference"] == {"filtered": 0, "pooled": 0}
    assert np.load(folder / "filtered.npy").shape == (512, 512)
    assert np.load(folder / "pooled.npy").shape == (256, 256)
    assert (folder / "convolution.png").read_bytes().startswith(b"\x89PNG")


def test_unknown_filter_name_is_refused_with_the_valid_names():
    with pytest.raises(DualBackendError, match="Unknown filter 'sobel'.*Valid filters: horizontal, edge, vertical"):
        convolution.run(lessons.recipe("convolution"), "torch", options={"filter": "sobel"})
