"""Keras' own arguments and callback hooks, the same on both backends, with tf.keras as the specification."""

import gc
import inspect
import re
import weakref

import numpy as np
import pytest

import dual_backend
from dual_backend.errors import DualBackendError
from tests.user_models import one_layer_models

_rng = np.random.default_rng(0)
X = _rng.normal(size=(80, 4)).astype("float32")
Y = _rng.integers(0, 3, 80)


def compiled_models():
    keras_model, keras, torch = one_layer_models(3, "softmax")
    for model in (keras, torch):
        model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return keras_model, keras, torch


# ---------------------------------------------------------------------- every argument of Keras' methods


@pytest.mark.parametrize("method", ["compile", "fit", "evaluate", "predict"])
def test_every_argument_of_keras_3_is_taken_by_name(method):
    """A new argument in Keras' signature fails here until the front end honours or refuses it."""
    import tensorflow as tf

    keras_names = [name for name, parameter in inspect.signature(getattr(tf.keras.Model, method)).parameters.items()
                   if name != "self" and parameter.kind is not parameter.VAR_KEYWORD]
    ours = inspect.signature(getattr(dual_backend.Model, method)).parameters
    assert [name for name in keras_names if name not in ours] == []


def test_predict_takes_verbose_and_both_backends_predict_the_same():
    _, keras, torch = compiled_models()
    np.testing.assert_allclose(torch.predict(X, verbose=0), keras.predict(X, verbose=0), rtol=1e-6, atol=1e-7)


def test_evaluate_returns_a_dict_with_return_dict_on_both_backends():
    keras_model, keras, torch = compiled_models()
    expected = keras_model.evaluate(X, Y, verbose=0, return_dict=True)
    for model in (keras, torch):
        logs = model.evaluate(X, Y, return_dict=True)
        assert list(logs) == ["loss", "accuracy"]
        assert logs == pytest.approx(expected, rel=1e-6)


def test_sample_weight_weighs_each_sample_loss_as_keras_does():
    keras_model, keras, torch = compiled_models()
    weights = np.random.default_rng(1).random(len(X)).astype("float32")
    expected = keras_model.evaluate(X, Y, sample_weight=weights, batch_size=16, verbose=0, return_dict=True)
    unweighted = keras_model.evaluate(X, Y, batch_size=16, verbose=0, return_dict=True)
    assert expected["loss"] != pytest.approx(unweighted["loss"])
    for model in (keras, torch):
        assert model.evaluate(X, Y, sample_weight=weights, batch_size=16, return_dict=True) == \
            pytest.approx(expected, rel=1e-6)


def test_class_weight_trains_as_keras_class_weight_on_both_backends():
    keras_model, keras, torch = compiled_models()
    class_weight = {0: 0.2, 1: 3.0}
    expected = keras_model.fit(X, Y, epochs=2, batch_size=16, shuffle=False, verbose=0,
                               class_weight=class_weight).history
    for model in (keras, torch):
        model.set_weights(one_layer_models(3, "softmax")[1].get_weights())
    histories = [m.fit(X, Y, epochs=2, batch_size=16, shuffle=False, verbose=0, class_weight=class_weight).history
                 for m in (keras, torch)]
    for history in histories:
        assert history["loss"] == pytest.approx(expected["loss"], rel=1e-5)
        assert history["accuracy"] == pytest.approx(expected["accuracy"])


def test_validation_split_keeps_the_last_fraction_before_shuffling():
    keras_model, keras, torch = compiled_models()
    expected = keras_model.fit(X, Y, epochs=1, batch_size=16, validation_split=0.25, verbose=0).history
    for model in (keras, torch):
        model.set_weights(one_layer_models(3, "softmax")[1].get_weights())
        history = model.fit(X, Y, epochs=1, batch_size=16, validation_split=0.25, shuffle=False, verbose=0).history
        # One epoch of SGD at 0.01 moves the weights little: the validation of the last 20 samples is
        # Keras' own to a few digits, a validation of other samples is not.
        assert history["val_loss"][0] == pytest.approx(expected["val_loss"][0], rel=2e-3)
        assert history["val_accuracy"] == pytest.approx(expected["val_accuracy"])


def test_evaluate_and_predict_print_keras_line_by_default_and_nothing_with_verbose_0(capsys):
    _, keras, torch = compiled_models()
    for model in (keras, torch):
        capsys.readouterr()
        model.evaluate(X, Y, batch_size=16)
        model.predict(X, batch_size=16)
        printed = capsys.readouterr().out.splitlines()
        assert len(printed) == 2, (model.backend, printed)
        assert re.fullmatch(r"5/5 \[=+\] - \d+s \d+(ms|us)/step - loss: \d\.\d{4} - accuracy: \d\.\d{4}", printed[0])
        assert re.fullmatch(r"5/5 \[=+\] - \d+s \d+(ms|us)/step", printed[1])
        model.evaluate(X, Y, verbose=0)
        model.predict(X, verbose=0)
        assert capsys.readouterr().out == ""


@pytest.mark.parametrize("call", ["fit", "evaluate", "predict"])
def test_fit_evaluate_and_predict_let_go_of_the_arrays_they_were_given(call):
    """A script that fits on new arrays again and again (new pictures each time) holds one copy, not one
    per call: with the garbage collector off, nothing of a call keeps its arrays once it returns."""
    _, keras, torch = compiled_models()
    for model in (keras, torch):
        x, y = X.copy(), Y.copy()
        arrays = [weakref.ref(x), weakref.ref(y)]
        gc.collect()
        gc.disable()
        try:
            if call == "predict":
                model.predict(x, batch_size=16)
            else:
                getattr(model, call)(x, y, batch_size=16, **({"epochs": 1} if call == "fit" else {}))
            del x, y
            assert [array() is None for array in arrays] == [True, True], (model.backend, call)
        finally:
            gc.enable()


def test_initial_epoch_numbers_the_epochs_as_keras_does():
    keras_model, keras, torch = compiled_models()
    expected = keras_model.fit(X, Y, epochs=4, initial_epoch=2, verbose=0)

    class Epochs(dual_backend.Callback):
        def __init__(self):
            super().__init__()
            self.seen = []

        def on_epoch_begin(self, epoch, logs=None):
            self.seen.append(epoch)

    for model in (keras, torch):
        epochs = Epochs()
        history = model.fit(X, Y, epochs=4, initial_epoch=2, verbose=0, callbacks=[epochs])
        assert history.epoch == expected.epoch == [2, 3]
        assert epochs.seen == [2, 3]
        assert len(history.history["loss"]) == 2


@pytest.mark.parametrize("method, arguments, named", [
    ("compile", {"loss_weights": [2.0]}, "loss_weights"),
    ("compile", {"weighted_metrics": ["accuracy"]}, "weighted_metrics"),
    ("compile", {"steps_per_execution": 4}, "steps_per_execution"),
    ("compile", {"jit_compile": True}, "jit_compile"),
    ("fit", {"validation_freq": 2}, "validation_freq"),
    ("fit", {"validation_steps": 2}, "validation_steps"),
    ("fit", {"class_weight": {0: 1.0}, "sample_weight": np.ones(80)}, "class_weight"),
    ("fit", {"validation_split": 1.5}, "validation_split"),
])
def test_arguments_without_keras_meaning_here_are_refused_in_the_same_words(method, arguments, named):
    _, keras, torch = compiled_models()
    messages = []
    for model in (keras, torch):
        call = getattr(model, method)
        with pytest.raises(DualBackendError) as error:
            if method == "compile":
                call(optimizer="sgd", loss="sparse_categorical_crossentropy", **arguments)
            else:
                call(X, Y, verbose=0, **arguments)
        messages.append(str(error.value))
    assert messages[0] == messages[1]
    assert named in messages[0]


# ---------------------------------------------------------------------- callback hooks and their logs


class Spy(dual_backend.Callback):
    """Records every hook with the logs it got, reading them every way a dict is read."""

    def __init__(self):
        super().__init__()
        self.calls, self.shapes = [], []


def _recorder(hook):
    def record(self, *args):
        *index, logs = args if args else (None,)
        assert isinstance(logs, dict)
        assert dict(logs) == dict(logs.items()) == {key: logs[key] for key in logs} == \
            {key: logs.get(key) for key in logs.keys()}
        assert len(logs) == len(list(logs)) and all(key in logs for key in logs)
        if "outputs" in logs:  # a batch of predictions: its shape, and its sum to compare
            self.shapes.append(np.shape(logs["outputs"]))
        self.calls.append((hook, *index, {key: float(np.sum(value)) for key, value in logs.items()}))

    return record


for _hook in [name for name in vars(dual_backend.Callback) if name.startswith("on_")]:
    setattr(Spy, _hook, _recorder(_hook))


def hook_calls(model) -> list:
    spy = Spy()
    model.fit(X[:64], Y[:64], epochs=2, batch_size=16, validation_data=(X[64:], Y[64:]), verbose=0,
              callbacks=[spy], batch_order_seed=0)
    model.evaluate(X, Y, batch_size=32, callbacks=[spy])
    model.predict(X, batch_size=32, callbacks=[spy])
    assert spy.shapes == [(32, 3), (32, 3), (16, 3)]
    return spy.calls


def test_every_hook_gets_the_same_logs_on_both_backends():
    _, keras, torch = compiled_models()
    on_keras, on_torch = hook_calls(keras), hook_calls(torch)
    assert [call[:-1] for call in on_torch] == [call[:-1] for call in on_keras]
    for (*where, expected), (_, *_, got) in zip(on_keras, on_torch):
        assert list(got) == list(expected), where
        assert got == pytest.approx(expected, rel=1e-5), where
    hooks = {call[0] for call in on_keras}
    assert hooks == {name for name in vars(dual_backend.Callback) if name.startswith("on_")}
    batch_end = next(call for call in on_torch if call[0] == "on_train_batch_end")
    assert list(batch_end[-1]) == ["loss", "accuracy"]
