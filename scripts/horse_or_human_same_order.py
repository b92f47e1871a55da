"""Note 003's horse-or-human model on both backends from one start, over one batch order: per-pass losses side by side.

keras builds the model (``--seed``) and its weights become torch's; both train with RMSprop(0.001) on the
same training pictures in the same order (a new permutation each pass, drawn from the seed), one ``fit``
of one epoch per pass, so the two runs differ only in the frameworks' arithmetic.  In float64 they are
one run; in float32 RMSprop's swings amplify the last bits within a few passes.  Each backend runs in a
process of its own (TensorFlow and torch's Triton do not share one).  Usage::

    DUAL_BACKEND_DATA_DIR=../shared/datasets python scripts/horse_or_human_same_order.py \\
        [--pictures 256] [--batch-size 32] [--passes 3] [--float64] [--seed 0]
"""

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def pictures(count: int, seed: int):
    """``count`` training pictures (all 1,027 with 0) picked with ``seed``, and their labels (horses 0, humans 1)."""
    import numpy as np

    from dual_backend import data
    from dual_backend.images import load_images

    train_dir, _ = data.horse_or_human_dirs()
    files = [(path, label) for label, folder in enumerate(("horses", "humans"))
             for path in sorted((train_dir / folder).glob("*.png"))]
    if count:
        files = [files[i] for i in np.random.RandomState(seed).permutation(len(files))[:count]]
    return load_images([path for path, _ in files], (300, 300)), np.array([label for _, label in files], "float32")


def train(args, backend: str, folder: Path) -> None:
    """One backend's run: its per-pass training loss and acc in ``folder/<backend>.json``."""
    import numpy as np

    import dual_backend
    from dual_backend import keras, precision

    dual_backend.set_backend(backend)
    floatx = "float64" if args.float64 else "float32"
    precision.set_floatx(floatx, [backend])
    dual_backend.backend_package(backend).seed(args.seed)
    model = keras.Sequential([
        keras.Input((300, 300, 3)),
        keras.layers.Conv2D(16, (3, 3), activation="relu"), keras.layers.MaxPooling2D(2, 2),
        keras.layers.Conv2D(32, (3, 3), activation="relu"), keras.layers.MaxPooling2D(2, 2),
        keras.layers.Conv2D(64, (3, 3), activation="relu"), keras.layers.MaxPooling2D(2, 2),
        keras.layers.Conv2D(64, (3, 3), activation="relu"), keras.layers.MaxPooling2D(2, 2),
        keras.layers.Flatten(), keras.layers.Dense(512, activation="relu"),
        keras.layers.Dense(1, activation="sigmoid")])
    start = folder / "start.npz"
    if backend == "keras":
        np.savez(start, *model.get_weights())
    else:
        saved = np.load(start)
        model.set_weights([saved[f"arr_{i}"] for i in range(len(saved.files))])
    model.compile(optimizer=keras.optimizers.RMSprop(learning_rate=0.001), loss="binary_crossentropy",
                  metrics=["acc"])
    x, y = pictures(args.pictures, args.seed)
    order = np.random.RandomState(args.seed)
    logs = {"loss": [], "acc": []}
    for _ in range(args.passes):
        rows = order.permutation(len(y))
        history = model.fit(x[rows].astype(floatx), y[rows].astype(floatx), batch_size=args.batch_size,
                            shuffle=False, epochs=1, verbose=0)
        for key in logs:
            logs[key].append(history.history[key][0])
    (folder / f"{backend}.json").write_text(json.dumps(logs))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pictures", type=int, default=256, help="how many training pictures (0: all 1,027)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--float64", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--backend", choices=["keras", "torch"], help=argparse.SUPPRESS)  # a child's
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.backend:
        sys.path.insert(0, str(ROOT))
        train(args, args.backend, args.folder)
        return
    with tempfile.TemporaryDirectory() as folder:
        for backend in ("keras", "torch"):  # keras first: its start is torch's
            subprocess.run([sys.executable, __file__, *sys.argv[1:], "--backend", backend, "--folder", folder],
                           check=True)
        logs = {backend: json.loads((Path(folder) / f"{backend}.json").read_text()) for backend in ("keras", "torch")}
    print(f"{'pass':>4}  {'keras loss':>20}  {'torch loss':>20}  {'difference':>10}  acc keras / torch")
    for index, (first, second) in enumerate(zip(logs["keras"]["loss"], logs["torch"]["loss"])):
        print(f"{index + 1:>4}  {first:>20.17f}  {second:>20.17f}  {abs(first - second):>10.1e}  "
              f"{logs['keras']['acc'][index]:.4f} / {logs['torch']['acc'][index]:.4f}")


if __name__ == "__main__":
    main()
