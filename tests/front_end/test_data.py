"""The data module: keras.datasets-compatible arrays, checked files, a clear error when nothing is found."""

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from dual_backend import data
from dual_backend.errors import DataError


def test_fashion_mnist_has_the_shapes_and_dtypes_of_keras_datasets():
    (x_train, y_train), (x_test, y_test) = data.load_fashion_mnist()
    assert x_train.shape == (60000, 28, 28) and x_test.shape == (10000, 28, 28)
    assert y_train.shape == (60000,) and y_test.shape == (10000,)
    assert {a.dtype for a in (x_train, y_train, x_test, y_test)} == {np.dtype(np.uint8)}


def test_fashion_mnist_first_training_label_is_an_ankle_boot():
    (_, y_train), (_, y_test) = data.load_fashion_mnist()
    assert y_train[0] == 9 and y_test[0] == 9
    assert data.FASHION_MNIST_CLASS_NAMES[9] == "Ankle boot"


def test_mnist_first_labels_and_pixel_mean_match_the_datasets_readme():
    (x_train, y_train), (x_test, _) = data.load_mnist()
    assert y_train[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert x_train.mean() == pytest.approx(33.32, abs=0.01)
    assert x_test.shape == (10000, 28, 28)


def test_ascent_is_the_512_by_512_uint8_image():
    image = data.load_ascent()
    assert image.shape == (512, 512) and image.dtype == np.uint8


def test_horse_or_human_folders_hold_the_two_classes():
    train, validation = data.horse_or_human_dirs()
    assert len(list((train / "horses").glob("*.png"))) == 500
    assert len(list((validation / "humans").glob("*.png"))) == 128


@pytest.fixture
def private_places(tmp_path, monkeypatch):
    """Data lookup confined to tmp_path: an explicit folder, an empty cache, no Debian folder, no network."""
    explicit = tmp_path / "explicit"
    explicit.mkdir()
    monkeypatch.setenv(data.DATA_DIR_VARIABLE, str(explicit))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(data, "DEBIAN_DATASETS", tmp_path / "debian")
    unreachable = tuple(
        data.RemoteFile(f.name, f.sha256, (f"file://{tmp_path}/nowhere/{f.name}",)) for f in data.MNIST_FILES
    )
    monkeypatch.setattr(data, "MNIST_FILES", unreachable)
    return explicit


REAL_MNIST = Path(os.environ[data.DATA_DIR_VARIABLE]) / "mnist"


def copy_mnist(to: Path) -> Path:
    target = to / "mnist"
    shutil.copytree(REAL_MNIST, target)
    for path in target.iterdir():
        path.chmod(0o644)  # the shared originals are read-only
    return target


def test_missing_data_names_every_place_looked_and_the_fixes(private_places, tmp_path):
    with pytest.raises(DataError) as error:
        data.load_mnist()
    message = str(error.value)
    for place in (private_places / "mnist", tmp_path / "cache" / "dual-backend" / "mnist", tmp_path / "debian" / "mnist"):
        assert str(place) in message
    assert "--data-dir" in message and "download" in message


def test_read_idx_rejects_a_file_shorter_than_its_header_declares(tmp_path):
    path = tmp_path / "short-idx1-ubyte"
    path.write_bytes(b"\x00\x00\x08\x01" + (5).to_bytes(4, "big") + b"\x01\x02")
    with pytest.raises(DataError, match="declares shape"):
        data.read_idx(path)


def test_download_lands_in_the_cache_only_after_its_checksum_matches(private_places, tmp_path, monkeypatch):
    mirror = REAL_MNIST
    served = tuple(
        data.RemoteFile(f.name, f.sha256, (f"file://{tmp_path}/down/{f.name}", f"file://{mirror}/{f.name}"))
        for f in data.MNIST_FILES
    )
    monkeypatch.setattr(data, "MNIST_FILES", served)
    (_, y_train), _ = data.load_mnist()
    assert y_train[:3].tolist() == [5, 0, 4]
    cached = tmp_path / "cache" / "dual-backend" / "mnist"
    assert sorted(p.name for p in cached.iterdir()) == sorted(f.name for f in served)
