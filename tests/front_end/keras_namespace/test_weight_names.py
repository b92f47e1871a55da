"""The LightningModule's weights carry Keras' variable names (``dense_1.kernel``), in every process alike,
and files saved with torch's own names (format 1) still load."""

import json
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

import dual_backend
from dual_backend import keras
from dual_backend.errors import DualBackendError
from dual_backend.keras import layers as layer_descriptions
from tests.front_end.keras_namespace.support import defined_on

_rng = np.random.default_rng(2)
REPOSITORY = Path(__file__).resolve().parents[3]


def dense_conv_norm_layers():
    return [keras.Input((8, 8, 1)), keras.layers.Conv2D(2, 3, activation="relu"),
            keras.layers.BatchNormalization(), keras.layers.Flatten(), keras.layers.Dense(4, activation="relu"),
            keras.layers.Dense(3, activation="softmax")]


KERAS_NAMES = ["conv2d.kernel", "conv2d.bias", "batch_normalization.gamma", "batch_normalization.beta",
               "batch_normalization.moving_mean", "batch_normalization.moving_variance",
               "dense.kernel", "dense.bias", "dense_1.kernel", "dense_1.bias"]


def built_in_a_fresh_session(backend, monkeypatch):
    """The model as a new Python process builds it: Keras' automatic layer names counted from zero."""
    monkeypatch.setattr(layer_descriptions, "_name_counts", defaultdict(int))
    model = defined_on(backend, dense_conv_norm_layers)
    model.build()
    return model


def test_the_lightning_modules_weights_are_named_as_tf_keras_names_its_variables(monkeypatch):
    keras_model = built_in_a_fresh_session("keras", monkeypatch).keras_model
    module = built_in_a_fresh_session("torch", monkeypatch).module

    def without_model_name(variables):  # sequential/dense_1/kernel → dense_1.kernel
        return [variable.path.split("/", 1)[1].replace("/", ".") for variable in variables]

    assert list(module.state_dict()) == without_model_name(keras_model.weights) == KERAS_NAMES
    assert [name for name, _ in module.named_parameters()] == without_model_name(keras_model.trainable_weights)


def test_the_same_definition_names_its_weights_alike_in_two_processes():
    program = ("import json, dual_backend\n"
               "from tests.front_end.keras_namespace.test_weight_names import dense_conv_norm_layers\n"
               "from dual_backend import keras\n"
               "dual_backend.set_backend('torch')\n"
               "model = keras.Sequential(dense_conv_norm_layers())\n"
               "model.build()\n"
               "print(json.dumps(list(model.module.state_dict())))\n")
    runs = [subprocess.Popen([sys.executable, "-c", program], cwd=REPOSITORY, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [run.communicate(timeout=300) for run in runs]
    assert all(run.returncode == 0 for run in runs), [stderr for _, stderr in outputs]
    names = [json.loads(stdout.strip().splitlines()[-1]) for stdout, _ in outputs]
    assert names[0] == names[1] == KERAS_NAMES


# The same weights under format 1's keys, constructed here as those files hold them:
# ``body.<the layer's index>.<torch's module and weight names>`` (Flatten, with none, is layer 2).
FORMAT_1_NAMES = {"conv2d.kernel": "body.0.conv.weight", "conv2d.bias": "body.0.conv.bias",
                  "batch_normalization.gamma": "body.1.gamma", "batch_normalization.beta": "body.1.beta",
                  "batch_normalization.moving_mean": "body.1.moving_mean",
                  "batch_normalization.moving_variance": "body.1.moving_variance",
                  "dense.kernel": "body.3.linear.weight", "dense.bias": "body.3.linear.bias",
                  "dense_1.kernel": "body.4.linear.weight", "dense_1.bias": "body.4.linear.bias"}


def format_1_keys(state_dict: dict) -> dict:
    return {FORMAT_1_NAMES[key]: tensor for key, tensor in state_dict.items()}


def trained(monkeypatch):
    model = built_in_a_fresh_session("torch", monkeypatch)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    x, y = _rng.random((16, 8, 8, 1)).astype("float32"), _rng.integers(0, 3, 16)
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    return model, x, y


def test_a_saved_file_of_format_1_loads_with_its_weights(monkeypatch, tmp_path):
    import torch

    model, x, y = trained(monkeypatch)
    path = tmp_path / "model.pt"
    model.save(path)
    checkpoint = torch.load(path, weights_only=True)
    assert checkpoint["format"] == "dual-backend/torch/2" and list(checkpoint["state_dict"]) == KERAS_NAMES
    checkpoint["format"], checkpoint["state_dict"] = "dual-backend/torch/1", format_1_keys(checkpoint["state_dict"])
    torch.save(checkpoint, tmp_path / "format_1.pt")
    loaded = keras.models.load_model(tmp_path / "format_1.pt")
    assert list(loaded.module.state_dict()) == KERAS_NAMES
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))


def test_a_lightning_checkpoint_of_format_1_resumes_in_a_users_trainer(monkeypatch, tmp_path):
    import lightning as L
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    model, x, y = trained(monkeypatch)
    batches = DataLoader(TensorDataset(torch.from_numpy(x), torch.from_numpy(y)), batch_size=8)
    settings = dict(max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                    enable_progress_bar=False, enable_model_summary=False)
    trainer = L.Trainer(**settings)
    trainer.fit(model.to_lightning(), batches)
    trainer.save_checkpoint(tmp_path / "last.ckpt")
    checkpoint = torch.load(tmp_path / "last.ckpt", weights_only=True)
    checkpoint["state_dict"] = format_1_keys(checkpoint["state_dict"])
    torch.save(checkpoint, tmp_path / "format_1.ckpt")
    other = built_in_a_fresh_session("torch", monkeypatch)
    other.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    L.Trainer(**settings).fit(other.to_lightning(), batches, ckpt_path=tmp_path / "format_1.ckpt")
    for got, expected in zip(other.get_weights(), model.get_weights(), strict=True):
        np.testing.assert_array_equal(got, expected)


def test_a_layer_may_take_the_name_of_a_method_of_the_lightning_module():
    model = defined_on("torch", lambda: [keras.Input((4,)), keras.layers.Dense(3, name="hidden"),
                                         keras.layers.Dense(2, name="logits")])
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    model.fit(_rng.random((8, 4)).astype("float32"), _rng.integers(0, 2, 8), epochs=1, verbose=0)
    assert list(model.module.state_dict()) == ["hidden.kernel", "hidden.bias", "logits.kernel", "logits.bias"]


@pytest.mark.parametrize("name, reason", [
    ("training", "the LightningModule keeps a value of its own under 'training'"),
    ("keras_optimizer", "the LightningModule keeps a value of its own under 'keras_optimizer'"),
    ("dense.head", "torch joins a layer's name and its weights' names")])
def test_a_layer_name_torch_cannot_give_its_weights_is_refused_on_torch_with_the_reason(name, reason):
    model = defined_on("torch", lambda: [keras.Input((4,)), keras.layers.Dense(3, name=name)])
    with pytest.raises(DualBackendError, match=rf"Layer name '{name}' cannot name a layer on the torch backend: "
                                               rf"{reason}.*Give the layer another name"):
        model.build()
    dual_backend.set_backend("keras")
    keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name=name)]).build()
