"""Resident memory after each of several ``fit`` (``evaluate``, ``predict``) calls on new arrays.

A script that trains on new pictures again and again should hold one copy of them, not one per call.
Each call gets 1,027 new 300x300x3 float32 pictures (1.03 GiB, horse-or-human's training set's size,
random pixels) and a small convolutional model; the process's resident memory is printed after each.
Usage::

    python scripts/fit_memory.py --backend torch [--calls 5] [--method fit|evaluate|predict]
"""

import argparse
import os


def resident_gib() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**30


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["keras", "torch"], required=True)
    parser.add_argument("--calls", type=int, default=5)
    parser.add_argument("--method", choices=["fit", "evaluate", "predict"], default="fit")
    args = parser.parse_args()

    import numpy as np

    import dual_backend
    from dual_backend import keras

    dual_backend.set_backend(args.backend)
    model = keras.Sequential([keras.Input((300, 300, 3)), keras.layers.Conv2D(4, (3, 3), activation="relu"),
                              keras.layers.MaxPooling2D(4, 4), keras.layers.Flatten(),
                              keras.layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer="rmsprop", loss="binary_crossentropy", metrics=["acc"])
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (1027, 300, 300, 3), dtype=np.uint8)
    y = rng.integers(0, 2, len(pixels)).astype("float32")
    for call in range(args.calls):
        x = pixels[rng.permutation(len(pixels))].astype("float32") * np.float32(1 / 255)
        if args.method == "predict":
            model.predict(x, batch_size=128, verbose=0)
        else:
            getattr(model, args.method)(x, y, batch_size=128, verbose=0)
        print(f"{args.backend} {args.method} {call + 1}: resident {resident_gib():.2f} GiB", flush=True)


if __name__ == "__main__":
    main()
