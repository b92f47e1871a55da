"""A user-written fashion_mlp (``from dual_backend import keras``) against the lesson's own, on the torch backend.

Both train on the same 60,000 Fashion-MNIST images, batch 32, in turns within one process (the machine's
speed drifts, so only a ratio measured in turns means anything); prints each one's steady seconds per
epoch (the median of the epochs after the first) and the ratio.  Usage::

    DUAL_BACKEND_DATA_DIR=../shared/datasets python scripts/user_model_speed.py [--turns 2] [--epochs 3]
"""

import argparse
import statistics

import dual_backend
from dual_backend import keras
from dual_backend.callbacks import EpochTimer
from dual_backend.model import steady_seconds


def user_written():
    dual_backend.set_backend("torch")
    model = keras.Sequential([keras.layers.Flatten(input_shape=(28, 28)), keras.layers.Dense(128, activation="relu"),
                              keras.layers.Dense(10, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    (x, y), _ = dual_backend.data.load_fashion_mnist()
    x = x.astype("float32") / 255
    seconds = {"lesson": [], "user-written": []}
    for _ in range(args.turns):
        for name, make in (("lesson", lambda: dual_backend.build("fashion_mlp", backend="torch", device="cpu")),
                           ("user-written", user_written)):
            timer = EpochTimer()
            make().fit(x, y, epochs=args.epochs, batch_size=32, verbose=0, callbacks=[timer])
            seconds[name].append(steady_seconds(timer.seconds))
    for name, values in seconds.items():
        print(f"{name}: {statistics.median(values):.3f} s per steady epoch ({', '.join(f'{v:.3f}' for v in values)})")
    print(f"user-written / lesson: {statistics.median(seconds['user-written']) / statistics.median(seconds['lesson']):.3f}")


if __name__ == "__main__":
    main()
