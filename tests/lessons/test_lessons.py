"""The lessons beyond their quick runs: layouts, callbacks, image pipelines, predict.

Each test trains for seconds at most on a slice of the real data.
"""

import importlib

import numpy as np
import pytest

import dual_backend
from dual_backend import cli, data, lessons
from dual_backend.callbacks import EarlyStopping, ModelCheckpoint, TensorBoard
from dual_backend.errors import DualBackendError
from dual_backend.run import prepare_data, run_lesson
from tests.conftest import BACKENDS


@pytest.fixture(scope="module")
def standardized():
    prepared = prepare_data(lessons.recipe("keras_basics", "standardized"), "quick")
    return prepared.x_train[:2000], prepared.y_train[:2000], prepared.x_valid[:1000], prepared.y_valid[:1000]


def test_keras_basics_holds_out_the_first_5000_training_images_for_validation():
    (x_train, y_train), _ = data.load_fashion_mnist()
    prepared = prepare_data(lessons.recipe("keras_basics", "baseline"), "full")
    assert (len(prepared.x_train), len(prepared.x_valid), len(prepared.x_test)) == (55_000, 5_000, 10_000)
    np.testing.assert_array_equal(prepared.y_valid, y_train[:5000])
    np.testing.assert_array_equal(prepared.x_train[0], x_train[5000])  # raw pixels for the baseline


def test_standardized_inputs_have_one_mean_and_one_std_fitted_on_training_pixels():
    prepared = prepare_data(lessons.recipe("keras_basics", "standardized"), "full")
    assert abs(prepared.x_train.mean()) < 1e-3 and abs(prepared.x_train.std() - 1) < 1e-3
    assert prepared.x_valid.mean() != pytest.approx(0, abs=1e-4)  # transformed with the training statistics


def test_fashion_cnn_data_gets_a_channel_axis():
    prepared = prepare_data(lessons.recipe("fashion_cnn"), "quick")
    assert prepared.x_train.shape[1:] == (28, 28, 1) and prepared.x_test.shape == (10_000, 28, 28, 1)


@pytest.mark.parametrize("backend", BACKENDS)
def test_fashion_cnn_summary_shows_the_shrinking_shapes(backend):
    lines = []
    dual_backend.build("fashion_cnn", backend=backend, device="cpu").summary(print_fn=lines.append)
    text = "\n".join(lines)
    for shape in ("(None, 26, 26, 64)", "(None, 13, 13, 64)", "(None, 11, 11, 64)", "(None, 5, 5, 64)"):
        assert shape in text


def test_torch_layer_outputs_are_nhwc_so_channel_indices_match_keras():
    import torch

    model = dual_backend.build("fashion_cnn", backend="torch", device="cpu")
    x = prepare_data(lessons.recipe("fashion_cnn"), "quick").x_test[:3]
    first = model.layer_outputs(x)[0]
    conv = model.module.body[0]
    direct = torch.relu(conv.convolve(torch.from_numpy(x).permute(0, 3, 1, 2))).detach().numpy()
    assert first.shape == (3, 26, 26, 64)
    np.testing.assert_allclose(first[..., 1], direct[:, 1], atol=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_early_stopping_stops_on_both_backends_by_keras_rule(backend, standardized):
    x, y, x_val, y_val = standardized
    dual_backend.backend_package(backend).seed(0)
    model = dual_backend.build("keras_basics", backend=backend, variant="standardized", device="cpu")
    # No epoch can improve val_loss by 10: the first sets the best, the second exhausts patience 1.
    history = model.fit(x, y, epochs=6, validation_data=(x_val, y_val), verbose=0,
                        callbacks=[EarlyStopping(patience=1, min_delta=10.0)])
    assert len(history.epoch) == 2


@pytest.mark.parametrize("backend", BACKENDS)
def test_checkpoint_keeps_the_model_with_the_best_val_loss(backend, standardized, tmp_path):
    x, y, x_val, y_val = standardized
    dual_backend.backend_package(backend).seed(0)
    model = dual_backend.build("keras_basics", backend=backend, variant="standardized", device="cpu")
    history = model.fit(x, y, epochs=3, validation_data=(x_val, y_val), verbose=0,
                        callbacks=[ModelCheckpoint(tmp_path / "best.keras", save_best_only=True)])
    path = tmp_path / "best.keras"  # Keras' archive on both backends, read back on the backend that wrote it
    assert path.stat().st_size > 0
    best = min(history.history["val_loss"])
    loss = dual_backend.load_model(path, device="cpu", backend=backend).evaluate(x_val, y_val)[0]
    assert loss == pytest.approx(best, rel=1e-4)


@pytest.mark.parametrize("backend", BACKENDS)
def test_tensorboard_writes_event_files(backend, standardized, tmp_path):
    x, y, x_val, y_val = standardized
    model = dual_backend.build("keras_basics", backend=backend, variant="standardized", device="cpu")
    model.fit(x[:500], y[:500], epochs=1, validation_data=(x_val, y_val), verbose=0,
              callbacks=[TensorBoard(tmp_path / "logs")])
    events = list((tmp_path / "logs").rglob("events.out.tfevents*"))
    assert events and all(path.stat().st_size > 0 for path in events)


@pytest.mark.parametrize("backend", BACKENDS)
def test_keras_basics_callbacks_variant_writes_logs_and_the_best_checkpoint(backend):
    from tests.lessons.test_training import quick_result

    folder = quick_result("keras_basics", "callbacks", backend, "cpu")["folder"]
    assert list((folder / "logs").rglob("events.out.tfevents*"))
    assert (folder / "best_model.keras").stat().st_size > 0  # Keras' archive on both backends


def horse_or_human_program(backend):
    return importlib.import_module(f"{dual_backend.BACKENDS[backend]}.horse_or_human")


@pytest.mark.parametrize("backend", BACKENDS)
def test_horse_or_human_labels_come_from_folder_names_horses_0_humans_1(backend):
    _, validation_dir = data.horse_or_human_dirs()
    batches = iter(horse_or_human_program(backend).validation_data(validation_dir, batch_size=128))
    (horses_x, horses_y), (_, humans_y) = next(batches), next(batches)
    assert np.all(np.asarray(horses_y) == 0) and np.all(np.asarray(humans_y) == 1)  # 128 + 128, in order
    assert np.asarray(horses_x).max() <= 1.0 and np.asarray(horses_x).shape[1:] in ((300, 300, 3), (3, 300, 300))


def test_horse_or_human_full_runs_are_judged_by_the_highest_epochs_training_acc():
    """A full run's last epoch may be one of RMSprop's dips (docs/verification.md): the epoch that
    reached the most is judged; a quick run by how far it moved the weights; other lessons as they were."""
    recipe = lessons.recipe("horse_or_human")
    history = {"loss": [0.69, 0.05, 0.40], "acc": [0.55, 0.99, 0.84]}
    assert recipe.judged_value("full", {}, history) == 0.99
    assert recipe.judged_value("quick", {}, history, weight_change=0.05) == 0.05
    assert lessons.judged_label({"judged_on": "training", "judged_by": "acc", "judged_epoch": "highest"}) == \
        "training acc (highest epoch)"
    assert lessons.recipe("keras_basics").judged_value("full", {"accuracy": 0.8}, {"accuracy": [0.9]}) == 0.8
    assert lessons.recipe("mnist_callback").judged_epoch("full") == "last"
    assert 0.84 not in recipe.expected("full") and 0.99 in recipe.expected("full")


def test_weight_change_is_the_distance_moved_over_the_size_of_the_start():
    """|w - w0| / |w0| over every array as one vector: horse_or_human's quick runs are judged by it."""
    before = [np.ones((3, 1), "float32"), np.zeros(1, "float32")]
    after = [np.full((3, 1), 2.0, "float32"), np.ones(1, "float32")]
    assert lessons.weight_change(before, after) == pytest.approx(2 / 3 ** 0.5)
    assert lessons.weight_change(before, before) == 0.0
    recipe = lessons.recipe("horse_or_human")
    assert recipe.judged_by("quick") == lessons.WEIGHT_CHANGE and recipe.judged_on("quick") == "training"
    assert 0.0 not in recipe.expected("quick")


@pytest.mark.parametrize("backend", BACKENDS)
def test_same_order_is_refused_for_pictures_read_from_folders(backend, tmp_path):
    """Each framework reads horse_or_human's folders in its own order: a run that says "same order"
    and is not would mislead, so it is refused before anything is built or written."""
    with pytest.raises(DualBackendError, match="--same-order is for lessons trained on arrays; horse_or_human"):
        run_lesson("horse_or_human", backend, profile="quick", seed=0, same_order=True, out=tmp_path, verbose=0)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(SystemExit) as usage_error:  # on the command line, a usage error, as a misspelt name
        cli.main(["run", "horse_or_human", "--backend", backend, "--same-order", "--out", str(tmp_path)])
    assert usage_error.value.code == 2 and list(tmp_path.iterdir()) == []


def test_a_repeated_loader_is_read_on_across_epochs_pass_after_pass():
    """torch_impl's ``Repeat`` is tf.data's ``repeat()``: epochs of ``steps_per_epoch`` batches
    continue the stream, whose passes end on their short batch (10 items in 4s: 4, 4, 2)."""
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from torch_impl.batches import Repeat

    loader = DataLoader(TensorDataset(torch.arange(10)), batch_size=4, shuffle=True,
                        generator=torch.Generator().manual_seed(0))
    epochs = Repeat(loader).epochs_of(2)
    seen = [[batch for (batch,) in epochs] for _ in range(6)]
    assert len(epochs) == 2
    assert [[len(b) for b in epoch] for epoch in seen] == [[4, 4], [2, 4], [4, 2]] * 2
    batches = [b for epoch in seen for b in epoch]
    for start in range(0, 12, 3):  # every pass holds each item once, in a new order
        assert sorted(torch.cat(batches[start:start + 3]).tolist()) == list(range(10))
    assert not torch.equal(torch.cat(batches[0:3]), torch.cat(batches[3:6]))


def test_a_repeated_loader_under_ddp_gives_each_process_its_share_of_every_batch(monkeypatch):
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from torch_impl import batches

    def epochs():
        loader = DataLoader(TensorDataset(torch.arange(10)), batch_size=4, shuffle=True,
                            generator=torch.Generator().manual_seed(0))
        return batches.Repeat(loader).epochs_of(3)

    whole = [batch for (batch,) in epochs()]
    shares = []
    for rank in (0, 1):
        monkeypatch.setattr(batches, "data_parallel_world", lambda rank=rank: (2, rank))
        shares.append([batch for (batch,) in epochs()])
    assert [len(b) for b in shares[0]] == [2, 2, 1] and [len(b) for b in shares[1]] == [2, 2, 1]
    for batch, first, second in zip(whole, *shares):
        assert torch.equal(torch.cat([first, second]), batch)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_pipeline_without_end_needs_steps_per_epoch(backend):
    train_dir, _ = data.horse_or_human_dirs()
    model = dual_backend.build("horse_or_human", backend=backend, device="cpu")
    with pytest.raises(DualBackendError, match="repeats without end: pass steps_per_epoch"):
        model.fit(horse_or_human_program(backend).training_data(train_dir, batch_size=8, seed=0), epochs=1)


@pytest.mark.parametrize("backend", BACKENDS)
def test_horse_or_human_trains_a_few_steps_and_predicts_probabilities(backend, tmp_path, capsys):
    train_dir, validation_dir = data.horse_or_human_dirs()
    dual_backend.backend_package(backend).seed(0)
    model = dual_backend.build("horse_or_human", backend=backend, device="cpu")
    history = model.fit(horse_or_human_program(backend).training_data(train_dir, batch_size=8, seed=0),
                        epochs=1, steps_per_epoch=2, verbose=0)
    assert list(history.history) == ["loss", "acc"] and np.isfinite(history.history["loss"][0])
    path = tmp_path / ("model.keras" if backend == "keras" else "model.pt")
    model.save(path)
    images = [str(validation_dir / "horses" / "horse1-000.png"), str(validation_dir / "humans" / "valhuman01-00.png")]
    assert cli.main(["predict", "horse_or_human", *images, "--backend", backend, "--checkpoint", str(path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    probabilities = [float(line) for line in lines[0::2]]
    assert all(0.0 <= p <= 1.0 for p in probabilities)
    assert [line.rsplit(" is a ", 1)[0] for line in lines[1::2]] == ["horse1-000.png", "valhuman01-00.png"]
    assert all(line.endswith(("is a horse", "is a human")) for line in lines[1::2])


def test_predict_without_a_trained_model_says_how_to_get_one(tmp_path, capsys):
    code = cli.main(["predict", "horse_or_human", "x.png", "--backend", "torch",
                     "--checkpoint", str(tmp_path / "model.pt")])
    assert code == 1 and "dual-backend run horse_or_human --backend torch" in capsys.readouterr().err
