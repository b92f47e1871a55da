"""What happens when a learner feeds a model or a data set something wrong.

Each bad input ends in the project's own error, with the same words on both
backends, or in the result Keras would give; never in a framework traceback.
One test per row of docs/what_happens_when_inputs.md.
"""

import gzip
import hashlib
import http.client
import importlib
import re
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pytest

import dual_backend
from dual_backend import data
from dual_backend.errors import DataError, DataWarning, DualBackendError
from tests.conftest import BACKENDS

RNG = np.random.default_rng(0)
X = RNG.random((8, 28, 28)).astype(np.float32)  # eight Fashion-MNIST-shaped images, already scaled
Y = np.array([0, 1, 2, 3, 4, 5, 6, 9])


def build(backend, lesson="fashion_mlp", **options):
    if lesson == "fashion_mlp":
        options.setdefault("hidden_units", 8)
    return dual_backend.build(lesson, backend=backend, device="cpu", **options)


def compiled(backend, loss, lesson="fashion_mlp"):
    model = build(backend, lesson)
    model.compile(optimizer="adam", loss=loss, metrics=["accuracy"])
    return model


def with_value(value, at=(3, 4, 5), dtype=np.float32):
    x = X.astype(dtype)
    x[at] = value
    return x


def other_backends_pipeline(backend):
    """A pipeline of the backend not chosen: a torch DataLoader for keras, a tf.data.Dataset for torch."""
    if backend == "keras":
        importlib.import_module("torch_impl")  # hides Triton, which cannot load after TensorFlow
        import torch

        return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.zeros(4, 28, 28), torch.zeros(4)))
    import tensorflow as tf

    return tf.data.Dataset.from_tensor_slices((np.zeros((4, 28, 28)), np.zeros(4))).batch(2)


def own_pipeline(backend):
    if backend == "keras":
        import tensorflow as tf

        return tf.data.Dataset.from_tensor_slices((X, Y)).batch(4)
    import torch

    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.from_numpy(X), torch.from_numpy(Y)),
                                       batch_size=4)


class ForeignCallback:
    """Not a dual_backend.Callback: a callback written for one framework only."""

    def on_epoch_end(self, epoch, logs=None): ...


# ---------------------------------------------------------------------------- front-end input checks


@dataclass
class Refused:
    """A bad call and the start of what the project answers, the same on both backends."""

    call: Callable
    message: str


REFUSED = {
    "input_shape_flat_images": Refused(
        lambda b: build(b).fit(X.reshape(8, 784), Y, verbose=0),
        "The model expects inputs of shape (None, 28, 28), got (8, 784). Reshape it with x.reshape(8, 28, 28)."),
    "input_shape_one_sample": Refused(
        lambda b: build(b).predict(X[0]),
        "The model expects inputs of shape (None, 28, 28), got (28, 28). That is one sample: add the batch "
        "axis, x.reshape(1, 28, 28)."),
    "input_shape_no_channel_axis": Refused(
        lambda b: build(b, "fashion_cnn").evaluate(X, Y),
        "The model expects inputs of shape (None, 28, 28, 1), got (8, 28, 28). Reshape it with "
        "x.reshape(8, 28, 28, 1)."),
    "input_shape_rgba": Refused(
        lambda b: build(b, "horse_or_human").predict(np.zeros((1, 300, 300, 4), np.float32)),
        "The model expects inputs of shape (None, 300, 300, 3), got (1, 300, 300, 4). These are RGBA images: "
        "drop the alpha channel with x[..., :3]."),
    "object_array": Refused(
        lambda b: build(b).fit(X.astype(object), Y, verbose=0),
        "Inputs must be numbers, got an array of dtype object."),
    "ragged_list": Refused(
        lambda b: build(b, "hello_world").fit([[1.0], [2.0, 3.0]], [1.0, 2.0], verbose=0),
        "Inputs cannot be made into one array"),
    "strings": Refused(
        lambda b: build(b).predict(np.full((2, 28, 28), "0")),
        "Inputs must be numbers, got an array of dtype <U1."),
    "complex_numbers": Refused(
        lambda b: build(b).predict(X.astype(np.complex64)),
        "Inputs must be real numbers, got an array of dtype complex64: keep the real part (np.real) or the "
        "magnitude (np.abs)."),
    "nan_inputs_fit": Refused(
        lambda b: build(b).fit(with_value(np.nan), Y, verbose=0),
        "The inputs contain NaN or infinite values (1 of them, the first in sample 3): the model would learn "
        "from NaN and predict NaN. Drop those samples or replace the values (np.nan_to_num)."),
    "infinite_inputs_predict": Refused(
        lambda b: build(b).predict(with_value(np.inf, at=(5, 0, 0))),
        "The inputs contain NaN or infinite values (1 of them, the first in sample 5)"),
    "beyond_float32_evaluate": Refused(
        lambda b: build(b).evaluate(with_value(1e300, dtype=np.float64), Y),
        "The inputs hold values too large for float32 (1 of them, the first in sample 3): beyond ±3.4e38, "
        "both frameworks would turn them into infinity. Scale them down."),
    "nan_labels": Refused(
        lambda b: build(b, "hello_world").fit([1.0, 2.0, 3.0], [4.0, np.nan, 10.0], verbose=0),
        "The labels contain NaN or infinite values (1 of them, the first in sample 1): the loss would be NaN."),
    "label_above_last_layer": Refused(
        lambda b: build(b).fit(X, np.where(Y == 9, 10, Y), verbose=0),
        "Received a label value of 10 which is outside the valid range of [0, 10). The last layer has 10 "
        "units but the labels go up to 10: give the last layer 11 units, Dense(11, activation='softmax'), "
        "one per class."),
    "negative_label_evaluate": Refused(
        lambda b: build(b).evaluate(X, np.where(Y == 0, -1, Y)),
        "Received a label value of -1 which is outside the valid range of [0, 10): class labels count from 0"),
    "fractional_labels_sparse": Refused(
        lambda b: build(b).fit(X, Y + 0.5, verbose=0),
        "sparse_categorical_crossentropy needs integer class labels (0, 1, 2, ...), got fractional values "
        "such as 0.5."),
    "one_hot_labels_sparse_loss": Refused(
        lambda b: build(b).fit(X, np.eye(10)[Y], verbose=0),
        "sparse_categorical_crossentropy needs one integer class label per sample, got labels of shape (8, 10). "
        "For one-hot labels compile with loss='categorical_crossentropy'."),
    "integer_labels_categorical_loss": Refused(
        lambda b: compiled(b, "categorical_crossentropy").fit(X, Y, verbose=0),
        "categorical_crossentropy needs one-hot labels of shape (8, 10), one column per unit of the last "
        "layer, got labels of shape (8,)."),
    "binary_label_2": Refused(
        lambda b: compiled(b, "binary_crossentropy", "hello_world").fit([1.0, 2.0], [0, 2], verbose=0),
        "binary_crossentropy needs labels between 0 and 1 (one class 0, the other 1), got values from 0 to 2."),
    "empty_arrays": Refused(
        lambda b: build(b).fit(X[:0], Y[:0], verbose=0),
        "The inputs are empty (0 samples): nothing to train or predict on."),
    "x_y_length_mismatch": Refused(
        lambda b: build(b).evaluate(X, Y[:5]),
        "x has 8 samples but y has 5 labels: they must have one label per sample."),
    "labels_missing": Refused(
        lambda b: build(b).fit(X, verbose=0),
        "Labels are missing (y is None): with an array x, give y, one label per sample."),
    "batch_size_zero_fit": Refused(
        lambda b: build(b).fit(X, Y, batch_size=0, verbose=0),
        "batch_size must be a positive integer, got 0."),
    "batch_size_negative_evaluate": Refused(
        lambda b: build(b).evaluate(X, Y, batch_size=-3),
        "batch_size must be a positive integer, got -3."),
    "batch_size_float_predict": Refused(
        lambda b: build(b).predict(X, batch_size=2.0),
        "batch_size must be a positive integer, got 2.0."),
    "negative_epochs": Refused(
        lambda b: build(b).fit(X, Y, epochs=-1, verbose=0),
        "epochs must be a non-negative integer, got -1."),
    "unknown_optimizer": Refused(
        lambda b: build(b).compile(optimizer="adamw", loss="sparse_categorical_crossentropy"),
        "Unknown optimizer 'adamw'. Valid optimizers: adam, sgd, rmsprop (or an optimizer object of the "
        "backend's framework)."),
    "unknown_loss": Refused(
        lambda b: build(b).compile(optimizer="adam", loss="hinge"),
        "Unknown loss 'hinge'. Valid losses: sparse_categorical_crossentropy, categorical_crossentropy, "
        "binary_crossentropy, mean_squared_error, mse."),
    "unknown_metric": Refused(
        lambda b: build(b).compile(optimizer="adam", loss="mse", metrics=["auc"]),
        "Unknown metric 'auc'. Valid metrics: accuracy, acc."),
    "metrics_as_a_string": Refused(
        lambda b: build(b).compile(optimizer="adam", loss="mse", metrics="accuracy"),
        "metrics must be a list of names, such as ['accuracy'], got the string 'accuracy'."),
    "validation_data_three_items": Refused(
        lambda b: build(b).fit(X, Y, validation_data=(X, Y, Y), verbose=0),
        "validation_data must be a tuple (x_val, y_val) or a data pipeline."),
    "validation_data_nan": Refused(
        lambda b: build(b).fit(X, Y, validation_data=(with_value(np.nan), Y), verbose=0),
        "In validation_data: The inputs contain NaN or infinite values"),
    "validation_data_label_out_of_range": Refused(
        lambda b: build(b).fit(X, Y, validation_data=(X, Y + 1), verbose=0),
        "In validation_data: Received a label value of 10 which is outside the valid range of [0, 10)."),
    "other_backends_pipeline": Refused(
        lambda b: build(b).fit(other_backends_pipeline(b), verbose=0),
        "Inputs must be a numpy array (or the backend's own pipeline: a tf.data.Dataset on keras, a torch "
        "DataLoader on torch), got "),
    "pipeline_with_labels": Refused(
        lambda b: build(b).evaluate(own_pipeline(b), Y),
        "A data pipeline yields its own labels: pass y=None."),
    "framework_callback": Refused(
        lambda b: build(b).fit(X, Y, callbacks=[ForeignCallback()], verbose=0),
        "callbacks must be dual_backend.Callback subclasses or dual_backend.TensorBoard, ModelCheckpoint, "
        "EarlyStopping; got tests.front_end.test_reliability_inputs.ForeignCallback."),
}


def refusal(backend, row: str) -> str:
    with pytest.raises(DualBackendError) as error:
        REFUSED[row].call(backend)
    return str(error.value)


@pytest.mark.parametrize("row", REFUSED)
def test_bad_input_is_refused_with_the_projects_message(row, backend):
    message = refusal(backend, row)
    assert message.startswith(REFUSED[row].message), message


def test_every_refusal_reads_the_same_on_both_backends():
    for row in REFUSED:
        if row == "other_backends_pipeline":  # names the other framework's class
            continue
        keras, torch = (refusal(backend, row) for backend in BACKENDS)
        assert keras == torch, row


def test_float_labels_with_integral_values_train_as_keras_accepts_them(backend):
    history = build(backend).fit(X, Y.astype(np.float64), epochs=1, verbose=0)
    assert list(history.history) == ["loss", "accuracy"] and np.isfinite(history.history["loss"][0])


def test_zero_epochs_return_an_empty_history_and_leave_the_weights(backend):
    model = build(backend)
    before = model.get_weights()
    history = model.fit(X, Y, epochs=0, verbose=0)
    assert history.history == {} and history.epoch == []
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))


def test_batch_size_none_means_32_in_evaluate_and_predict(backend):
    model = build(backend)
    assert model.predict(X, batch_size=None).shape == (8, 10)
    assert len(model.evaluate(X, Y, batch_size=None)) == 2


def test_one_callback_not_in_a_list_is_taken_as_keras_takes_it(backend):
    seen = []

    class Record(dual_backend.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append(epoch)

    build(backend).fit(X, Y, epochs=2, callbacks=Record(), verbose=0)
    assert seen == [0, 1]


# ---------------------------------------------------------------------------- data-set files

from tests.front_end.test_data import copy_mnist, private_places  # noqa: E402,F401 - private_places is a fixture


@pytest.fixture
def mnist_copy(private_places):
    """A private copy of MNIST's four files as the only place looked (no cache, no Debian folder, no network)."""
    return copy_mnist(private_places)


def test_truncated_gzip_is_named_as_truncated_or_corrupted(mnist_copy):
    labels = mnist_copy / "t10k-labels-idx1-ubyte.gz"
    labels.write_bytes(labels.read_bytes()[:1000])
    with pytest.raises(DataError, match=re.escape(f"{labels} is truncated or corrupted")):
        data.load_mnist()


def test_corrupted_gzip_fails_its_crc_and_is_named(mnist_copy):
    images = mnist_copy / "t10k-images-idx3-ubyte.gz"
    raw = bytearray(images.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    images.write_bytes(bytes(raw))
    with pytest.raises(DataError, match=re.escape(f"{images} is truncated or corrupted")):
        data.load_mnist()


def test_file_with_other_content_fails_the_checksum(mnist_copy):
    labels = mnist_copy / "t10k-labels-idx1-ubyte.gz"
    labels.write_bytes(gzip.compress(gzip.decompress(labels.read_bytes())[:-1] + b"\x00"))
    with pytest.raises(DataError, match="does not have the expected content: SHA-256"):
        data.load_mnist()


def test_wrong_idx_magic_number_is_named(tmp_path):
    path = tmp_path / "labels-idx1-ubyte.gz"
    path.write_bytes(gzip.compress(b"\x00\x00\x0d\x01" + (3).to_bytes(4, "big") + b"\x01\x02\x03"))
    with pytest.raises(DataError, match="its magic number is 00000d01, expected 00000801 .labels. or 00000803"):
        data.read_idx(path)


class FakeHost:
    """Stands in for data._download: each call writes the next of ``responses`` (bytes, or bytes
    and then an exception, as a connection that drops part-way)."""

    def __init__(self, *responses):
        self.responses, self.urls = list(responses), []

    def __call__(self, url, destination):
        self.urls.append(url)
        response = self.responses.pop(0)
        written, error = response if isinstance(response, tuple) else (response, None)
        destination.write_bytes(written)
        if error is not None:
            raise error


CONTENT = b"the real bytes of a data file"
REMOTE = data.RemoteFile("file.bin", hashlib.sha256(CONTENT).hexdigest(), ("https://a.example/file.bin",
                                                                           "https://b.example/file.bin"))


def test_download_with_wrong_content_is_retried_once_and_then_kept(tmp_path, monkeypatch):
    host = FakeHost(b"a different file", CONTENT)
    monkeypatch.setattr(data, "_download", host)
    path = data.fetch(REMOTE, tmp_path / "cache")
    assert host.urls == [REMOTE.urls[0]] * 2
    assert path.read_bytes() == CONTENT and [p.name for p in (tmp_path / "cache").iterdir()] == ["file.bin"]


def test_download_wrong_twice_from_every_host_ends_in_a_clear_error_and_no_file(tmp_path, monkeypatch):
    host = FakeHost(*[b"a different file"] * 4)
    monkeypatch.setattr(data, "_download", host)
    with pytest.raises(DataError, match=re.escape(
            "https://a.example/file.bin: downloaded twice, and neither copy had the expected content (SHA-256 ")):
        data.fetch(REMOTE, tmp_path / "cache")
    assert len(host.urls) == 4 and list((tmp_path / "cache").iterdir()) == []


def test_download_cut_off_part_way_leaves_no_partial_file_and_tries_the_next_host(tmp_path, monkeypatch):
    host = FakeHost((CONTENT[:10], http.client.IncompleteRead(CONTENT[:10], len(CONTENT) - 10)), CONTENT)
    monkeypatch.setattr(data, "_download", host)
    path = data.fetch(REMOTE, tmp_path / "cache")
    assert host.urls == list(REMOTE.urls)
    assert path.read_bytes() == CONTENT and [p.name for p in (tmp_path / "cache").iterdir()] == ["file.bin"]


def test_download_stopped_with_ctrl_c_leaves_no_partial_file(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "_download", FakeHost((CONTENT[:10], KeyboardInterrupt())))
    with pytest.raises(KeyboardInterrupt):
        data.fetch(REMOTE, tmp_path / "cache")
    assert list((tmp_path / "cache").iterdir()) == []


# ---------------------------------------------------------------------------- image folders


def horse_or_human(backend):
    return importlib.import_module(f"{dual_backend.BACKENDS[backend]}.horse_or_human")


def image_folder(root, per_class=2, classes=("horses", "humans")):
    """A tiny horse_or_human: ``per_class`` 8x8 RGBA PNGs in each class folder."""
    from PIL import Image

    for name in classes:
        (root / name).mkdir(parents=True)
        for index in range(per_class):
            Image.new("RGBA", (8, 8), (index * 60, 100, 200, 255)).save(root / name / f"{name}{index}.png")
    return root


def images_read(pipeline) -> int:
    return sum(len(labels) for _, labels in pipeline)


def test_stray_files_are_skipped_with_a_warning_that_names_and_counts_them(backend, tmp_path):
    folder = image_folder(tmp_path / "train")
    (folder / "horses" / "notes.txt").write_text("not a picture")
    (folder / "README").write_text("beside the class folders")
    with pytest.warns(DataWarning, match=r"Skipping 2 files in .*train that are not images \(both pipelines "
                                         r"skip them\):\n  - README\n  - horses/notes.txt"):
        pipeline = horse_or_human(backend).validation_data(folder, batch_size=4)
    assert images_read(pipeline) == 4


@pytest.mark.parametrize("fault, words", [
    ("truncated_png", "unreadable images:\n  - humans/noise.png (Truncated File Read)"),
    ("empty_png", "unreadable images:\n  - horses/empty.png (not an image Pillow can read)"),
    ("text_named_png", "unreadable images:\n  - horses/photo.png (not an image Pillow can read)"),
    ("webp_image", "images in formats only one backend reads (both read .bmp, .jpeg, .jpg, .png):\n"
                   "  - horses/extra.webp"),
])
def test_unreadable_or_one_backend_images_are_refused_and_listed(fault, words, backend, tmp_path):
    from PIL import Image

    folder = image_folder(tmp_path / "train")
    if fault == "truncated_png":
        png = folder / "humans" / "noise.png"
        Image.fromarray(RNG.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(png)
        png.write_bytes(png.read_bytes()[:1500])
    elif fault == "empty_png":
        (folder / "horses" / "empty.png").write_bytes(b"")
    elif fault == "text_named_png":
        (folder / "horses" / "photo.png").write_text("not a picture")
    else:
        Image.new("RGB", (8, 8)).save(folder / "horses" / "extra.webp")
    with pytest.raises(DataError, match=re.escape(words) + r"[\s\S]*Convert them to PNG or move them out"):
        horse_or_human(backend).training_data(folder, batch_size=4)


@pytest.mark.parametrize("layout, words", [
    ("missing_class", "must hold 2 class folders, one per class (the labels are their names, in alphabetical "
                      "order), but holds 1: horses."),
    ("hidden_folder", "must hold 2 class folders, one per class (the labels are their names, in alphabetical "
                      "order), but holds 3: .ipynb_checkpoints, horses, humans. Remove the hidden ones."),
    ("empty_folder", "must hold 2 class folders, one per class (the labels are their names, in alphabetical "
                     "order), but holds 0: none."),
    ("empty_class", "the class folder humans holds no images (.bmp, .jpeg, .jpg, .png)."),
    ("no_such_folder", "is not a folder: give the folder that holds one subfolder of images per class."),
])
def test_image_folder_without_the_two_classes_is_refused(layout, words, backend, tmp_path):
    folder = tmp_path / "train"
    if layout == "missing_class":
        image_folder(folder, classes=("horses",))
    elif layout == "hidden_folder":
        image_folder(folder)
        (folder / ".ipynb_checkpoints").mkdir()
    elif layout == "empty_folder":
        folder.mkdir()
    elif layout == "empty_class":
        image_folder(folder, classes=("horses",))
        (folder / "humans").mkdir()
    with pytest.raises(DataError, match=re.escape(words)):
        horse_or_human(backend).training_data(folder, batch_size=4)
