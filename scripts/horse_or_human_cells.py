"""Note 003's horse-or-human cells as the note runs them, on one backend: batch 128, 8 steps an epoch, 15 epochs.

The cells are the test's (tests/front_end/keras_namespace/test_cells_of_notes_003_and_004.py, the note's
code with its import changed and its typos corrected), with the note's three numbers put back in place of
the test's short run.  Prints each seed's training accuracy per epoch, its last epoch's and its highest.
One backend per process (TensorFlow and torch's Triton do not share one).  Usage::

    DUAL_BACKEND_DATA_DIR=../shared/datasets python scripts/horse_or_human_cells.py --backend torch --seeds 0 1 2
"""

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the tests' cell text

import dual_backend  # noqa: E402
from tests.front_end.keras_namespace import test_cells_of_notes_003_and_004 as cells  # noqa: E402

THE_NOTES_NUMBERS = {"batch_size = 16": "batch_size = 128", "steps_per_epoch=2": "steps_per_epoch=8",
                     "epochs=2": "epochs=15"}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["keras", "torch"], required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    args = parser.parse_args()
    text = cells.HORSE_OR_HUMAN_CELLS
    for short, notes in THE_NOTES_NUMBERS.items():
        if short not in text:
            sys.exit(f"the test's cells no longer say {short!r}: update THE_NOTES_NUMBERS")
        text = text.replace(short, notes)
    train_dir, _ = dual_backend.data.horse_or_human_dirs()
    for seed in args.seeds:
        start = time.perf_counter()
        scope = cells.run_cells(text, args.backend, seed=seed, HORSE_OR_HUMAN=str(train_dir))
        accuracy = scope["history"].history["acc"]
        print(f"{args.backend} seed {seed}: training acc per epoch {[round(a, 4) for a in accuracy]}; "
              f"last {accuracy[-1]:.4f}, highest {max(accuracy):.4f} ({time.perf_counter() - start:.0f} s)",
              flush=True)


if __name__ == "__main__":
    main()
