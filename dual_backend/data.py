"""The course's data sets, as numpy arrays exactly like ``keras.datasets``.

Where a data set is looked for, in order:

1. the folder named by ``--data-dir`` or the ``DUAL_BACKEND_DATA_DIR``
   environment variable (CI points it at ``../shared/datasets``);
2. the user's cache, ``$XDG_CACHE_HOME/dual-backend`` (``~/.cache/dual-backend``);
3. Debian's ``/usr/share/datasets/<name>`` (``apt-get install dataset-fashion-mnist``);
4. a download from the official hosts into the cache, checked before it is kept.

Each data set lives in a folder of its own name (``fashion-mnist``, ``mnist``,
``horse-or-human``, ``ascent``) inside any of those places.  IDX files are
parsed here rather than by a framework, so that the front end stays
framework-free and both backends see the very same bytes.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import os
import pickle
import shutil
import sys
import tempfile
import urllib.error
import urllib.request
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dual_backend.errors import DataError

DATA_DIR_VARIABLE = "DUAL_BACKEND_DATA_DIR"
DEBIAN_DATASETS = Path("/usr/share/datasets")

FASHION_MNIST_CLASS_NAMES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)


@dataclass(frozen=True)
class RemoteFile:
    """One file of a data set: its name, where to fetch it, what it must hash to.

    ``sha256`` is the hash of the *content*: for a ``.gz`` file the hash of the
    decompressed bytes, because mirrors recompress and only the content is
    stable (see ``../shared/datasets/README.md``).
    """

    name: str
    sha256: str
    urls: tuple[str, ...]


def _idx_files(base_urls: tuple[str, ...], hashes: dict[str, str]) -> tuple[RemoteFile, ...]:
    return tuple(
        RemoteFile(f"{stem}.gz", sha, tuple(f"{base}{stem}.gz" for base in base_urls))
        for stem, sha in hashes.items()
    )


FASHION_MNIST_FILES = _idx_files(
    (
        "https://storage.googleapis.com/tensorflow/tf-keras-datasets/",
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    ),
    {
        "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
    },
)

MNIST_FILES = _idx_files(
    (
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
    ),
    {
        "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    },
)

# SciPy's own registry hash for ascent.dat: the file is a pickle, so it is
# unpickled only once its bytes are known to be SciPy's.
ASCENT_FILE = RemoteFile(
    "ascent.dat",
    "03ce124c1afc880f87b55f6b061110e2e1e939679184f5614e38dacc6c1957e2",
    ("https://raw.githubusercontent.com/scipy/dataset-ascent/main/ascent.dat",),
)

# The course's zips carry no published checksum; a download is accepted when
# it unpacks to the class folders with the published image counts.
HORSE_OR_HUMAN_ZIPS = {
    "train": "https://storage.googleapis.com/learning-datasets/horse-or-human.zip",
    "validation": "https://storage.googleapis.com/learning-datasets/validation-horse-or-human.zip",
}
HORSE_OR_HUMAN_COUNTS = {
    "train": {"horses": 500, "humans": 527},
    "validation": {"horses": 128, "humans": 128},
}


# --------------------------------------------------------------------------
# Where to look


def set_data_dir(path: str | os.PathLike | None) -> None:
    """Make ``path`` the first place data is looked for (``--data-dir``).

    It is stored in the environment so that worker processes inherit it.
    """
    if path is None:
        return
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise DataError(
            f"--data-dir {path!s} is not a folder. Give the folder that holds "
            "fashion-mnist/, mnist/, horse-or-human/ and ascent/ "
            "(in this repository's CI: ../shared/datasets)."
        )
    os.environ[DATA_DIR_VARIABLE] = str(folder.resolve())


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "dual-backend"


def search_path(name: str) -> list[Path]:
    """The folders that may hold data set ``name``, in the order they are tried."""
    places = []
    explicit = os.environ.get(DATA_DIR_VARIABLE)
    if explicit:
        places.append(Path(explicit) / name)
    places.append(cache_dir() / name)
    places.append(DEBIAN_DATASETS / name)
    return places


def _missing_data_error(name: str, looked: list[Path], download_error: str) -> DataError:
    places = "\n".join(f"  - {place}" for place in looked)
    return DataError(
        f"Could not find the {name} data set. Looked in:\n{places}\n"
        f"and a download from the official hosts failed: {download_error}\n"
        "To fix it, do one of:\n"
        f"  - pass --data-dir DIR (or set {DATA_DIR_VARIABLE}=DIR) where DIR/{name}/ holds the files;\n"
        f"  - copy the files into {cache_dir() / name};\n"
        + ("  - on Debian: apt-get install dataset-fashion-mnist;\n" if name == "fashion-mnist" else "")
        + "  - connect to the internet so the files can be downloaded."
    )


# --------------------------------------------------------------------------
# Reading and checking files


def _content_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as stream:
            for block in iter(lambda: stream.read(1 << 20), b""):
                digest.update(block)
    except (OSError, EOFError, zlib.error) as error:
        raise DataError(
            f"{path} is truncated or corrupted ({error}). Delete it and fetch it again "
            "(a download checks it), or copy an intact file from the data set's release."
        ) from None
    return digest.hexdigest()


def _verify(path: Path, expected_sha256: str) -> None:
    actual = _content_sha256(path)
    if actual != expected_sha256:
        raise DataError(
            f"{path} does not have the expected content: SHA-256 {actual[:12]}…, "
            f"expected {expected_sha256[:12]}…. The file is corrupted or is a different "
            "data set; delete it and fetch it again."
        )


def read_idx(path: Path) -> np.ndarray:
    """Parse an IDX file (optionally gzipped) of unsigned bytes into a numpy array.

    The format: two zero bytes, a type byte (0x08 for unsigned byte), the number
    of dimensions, then one big-endian int32 per dimension and the data.
    """
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as stream:
            raw = stream.read()
    except (OSError, EOFError, zlib.error) as error:
        raise DataError(f"{path} is truncated or corrupted ({error}). Delete it and fetch it again.") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08 or not 1 <= raw[3] <= 3:
        raise DataError(
            f"{path} is not an IDX file of unsigned bytes: its magic number is "
            f"{raw[:4].hex() or 'missing'}, expected 00000801 (labels) or 00000803 (images)."
        )
    ndim = raw[3]
    header = 4 + 4 * ndim
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(shape))
    if len(raw) != expected:
        raise DataError(
            f"{path} declares shape {shape} ({expected} bytes with its header) "
            f"but holds {len(raw)} bytes: the file is truncated or corrupted. Delete it and fetch it again."
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape).copy()


def _find_file(folder: Path, file: RemoteFile) -> Path | None:
    """The file itself, or its decompressed twin (``x.gz`` may be stored as ``x``)."""
    for candidate in (folder / file.name, folder / file.name.removesuffix(".gz")):
        if candidate.is_file():
            return candidate
    return None


# --------------------------------------------------------------------------
# Downloading


# What a failed download raises: a host not found or refusing (URLError), a connection closed
# before Content-Length bytes (http.client.IncompleteRead), a timeout or a full disk (OSError).
DOWNLOAD_ERRORS = (urllib.error.URLError, http.client.HTTPException, OSError)


def _download(url: str, destination: Path) -> None:
    """Stream ``url`` into ``destination`` with a progress bar on stderr."""
    from tqdm import tqdm

    with urllib.request.urlopen(url, timeout=60) as response, open(destination, "wb") as out:
        total = int(response.headers.get("Content-Length") or 0) or None
        with tqdm(total=total, unit="B", unit_scale=True, desc=f"Downloading {url.rsplit('/', 1)[-1]}",
                  file=sys.stderr, disable=None) as bar:
            for block in iter(lambda: response.read(1 << 16), b""):
                out.write(block)
                bar.update(len(block))


def fetch(file: RemoteFile, folder: Path) -> Path:
    """Download ``file`` into ``folder``; it appears there only once it checks out.

    Each mirror is tried in turn.  A download whose content does not match its
    SHA-256 (or a gzip that ends early) is tried once more from the same host,
    since a dropped connection can leave a short file behind; a host that
    cannot be reached is not.  The bytes go to a temporary file in the same
    folder and are renamed into place atomically, so the cache never holds a
    partial file, whatever stops the download.
    """
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DataError(f"Cannot create the cache folder {folder} ({error}).") from None
    problems = []
    for url in file.urls:
        for _attempt in range(2):
            handle, temporary = tempfile.mkstemp(dir=folder, prefix=f".{file.name}.", suffix=Path(file.name).suffix)
            os.close(handle)
            temporary = Path(temporary)
            try:
                _download(url, temporary)
                if _content_sha256(temporary) == file.sha256:
                    os.replace(temporary, folder / file.name)
                    return folder / file.name
            except DataError:  # a gzip that ends early: as a mismatch, worth one more try
                pass
            except DOWNLOAD_ERRORS as error:
                problems.append(f"{url}: {error}")
                break
            finally:
                temporary.unlink(missing_ok=True)
        else:
            problems.append(f"{url}: downloaded twice, and neither copy had the expected content "
                            f"(SHA-256 {file.sha256[:12]}…)")
    raise DataError("; ".join(problems))


# --------------------------------------------------------------------------
# The data sets


def _locate_files(name: str, files: tuple[RemoteFile, ...]) -> list[Path]:
    """Paths of every file of data set ``name``, checked, fetched if nowhere on disk."""
    looked = search_path(name)
    for folder in looked:
        found = [_find_file(folder, file) for file in files]
        if all(found):
            for path, file in zip(found, files):
                _verify(path, file.sha256)
            return found
    try:
        return [fetch(file, cache_dir() / name) for file in files]
    except DataError as error:
        raise _missing_data_error(name, looked, str(error)) from None


def _load_idx_dataset(name: str, files: tuple[RemoteFile, ...]):
    train_x, train_y, test_x, test_y = (read_idx(path) for path in _locate_files(name, files))
    for images, labels in ((train_x, train_y), (test_x, test_y)):
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise DataError(
                f"The {name} files do not fit together: images {images.shape}, labels {labels.shape}. "
                "Expected (N, 28, 28) images and N labels."
            )
    return (train_x, train_y), (test_x, test_y)


def load_fashion_mnist():
    """``((x_train, y_train), (x_test, y_test))``: (60000, 28, 28) and (10000, 28, 28) uint8 images."""
    return _load_idx_dataset("fashion-mnist", FASHION_MNIST_FILES)


def load_mnist():
    """``((x_train, y_train), (x_test, y_test))`` of MNIST digits, as ``keras.datasets.mnist``."""
    return _load_idx_dataset("mnist", MNIST_FILES)


def load_hello_world():
    """Course note 003's six points on the line y = 3x + 1, and the x the course predicts for."""
    xs = np.array([-1.0, 0.0, 1.0, 2.0, 3.0, 4.0], dtype=np.float32)
    ys = np.array([-2.0, 1.0, 4.0, 7.0, 10.0, 13.0], dtype=np.float32)
    return (xs, ys), (np.array([10.0], dtype=np.float32), np.array([31.0], dtype=np.float32))


LOADERS = {"fashion_mnist": load_fashion_mnist, "mnist": load_mnist, "hello_world": load_hello_world}


def load(dataset: str):
    """Load a data set by the name a lesson spec uses (``fashion_mnist``, ``mnist``)."""
    return LOADERS[dataset]()


def _has_horse_or_human(folder: Path) -> bool:
    return all((folder / split / cls).is_dir() for split, classes in HORSE_OR_HUMAN_COUNTS.items() for cls in classes)


def _fetch_horse_or_human(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for split, url in HORSE_OR_HUMAN_ZIPS.items():
        staging = Path(tempfile.mkdtemp(dir=folder, prefix=f".{split}."))
        try:
            archive = staging / "download.zip"
            _download(url, archive)
            with zipfile.ZipFile(archive) as zipped:
                zipped.extractall(staging / split)
            for cls, count in HORSE_OR_HUMAN_COUNTS[split].items():
                found = len(list((staging / split / cls).glob("*.png")))
                if found != count:
                    raise DataError(f"{url} unpacked to {found} images in {cls}/, expected {count}.")
            shutil.rmtree(folder / split, ignore_errors=True)  # half of an earlier fetch that stopped
            os.replace(staging / split, folder / split)
        except (*DOWNLOAD_ERRORS, zipfile.BadZipFile) as error:
            raise DataError(f"{url}: {error}") from None
        finally:
            shutil.rmtree(staging, ignore_errors=True)


def horse_or_human_dirs() -> tuple[Path, Path]:
    """The ``train`` and ``validation`` folders, each with ``horses/`` and ``humans/`` inside."""
    looked = search_path("horse-or-human")
    for folder in looked:
        if _has_horse_or_human(folder):
            return folder / "train", folder / "validation"
    try:
        _fetch_horse_or_human(cache_dir() / "horse-or-human")
    except DataError as error:
        raise _missing_data_error("horse-or-human", looked, str(error)) from None
    return cache_dir() / "horse-or-human" / "train", cache_dir() / "horse-or-human" / "validation"


def load_ascent() -> np.ndarray:
    """The 512x512 uint8 'ascent' image of ``scipy.datasets.ascent()``, hash-checked before unpickling."""
    (path,) = _locate_files("ascent", (ASCENT_FILE,))
    with open(path, "rb") as stream:
        image = pickle.load(stream)  # safe: _locate_files checked SciPy's SHA-256 first
    return np.asarray(image, dtype=np.uint8)
