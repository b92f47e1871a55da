"""The port is the same model: weights move between the backends and give the same numbers.

fp32 on the CPU.  Tolerances are those of ``dual_backend.parity``: 1e-5 for
outputs and for weights after one step, 1e-3 for per-step losses.
"""

import types

import numpy as np
import pytest

import dual_backend
from dual_backend import data, lessons, parity, precision
from dual_backend.errors import DualBackendError
from dual_backend.run import prepare_data

EVERY_MODEL = [(lesson.name, variant) for lesson in lessons.LESSONS.values() if lesson.kind == "train"
               for variant in ["default", *lesson.variants]]


@pytest.mark.parametrize("lesson, variant", EVERY_MODEL)
def test_forward_outputs_agree_after_transfer_in_both_directions(lesson, variant):
    x_test, _, _ = parity.sample_data(lessons.recipe(lesson, variant), 1000)
    *found, _ = parity.forward_checks(lesson, variant, x_test)
    for check in found:
        assert check.passed and check.tolerance == parity.forward_tolerance(x_test), check.line()


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "rmsprop"])
def test_one_training_step_gives_the_same_weights(optimizer):
    (check,) = [c for c in parity.checks("fashion_mlp", optimizers=[optimizer], inputs=32) if "step" in c.name]
    assert check.difference <= parity.STEP_TOLERANCE, check.line()


def small_batchnorm_model(backend):
    """Dense(64, relu) → BatchNormalization → Dense(10, softmax): a BatchNorm model whose one step
    is not chaotic (the 20-layer deep_batchnorm amplifies float32 rounding ~1,000x per step)."""
    if backend == "keras":
        import tensorflow as tf

        def build_model(input_shape):
            model = tf.keras.Sequential([tf.keras.Input(shape=input_shape), tf.keras.layers.Flatten(),
                                         tf.keras.layers.Dense(64, activation="relu"),
                                         tf.keras.layers.BatchNormalization(),
                                         tf.keras.layers.Dense(10, activation="softmax")])
            model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
            return model
    else:
        def build_model(input_shape):
            # Imported once the front end has started the torch backend (it keeps Triton out after TensorFlow).
            from torch_impl.keras import BatchNormalization, Dense, Flatten, Input, Sequential

            model = Sequential([Input(shape=input_shape), Flatten(), Dense(64, activation="relu"),
                                BatchNormalization(), Dense(10, activation="softmax")])
            model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
            return model
    program = types.SimpleNamespace(build_model=build_model)
    return dual_backend.backend_package(backend).build(program, lessons.recipe("fashion_mlp"), {}, "cpu")


def test_one_step_of_a_batchnorm_model_agrees_moving_statistics_included():
    prepared = prepare_data(lessons.recipe("fashion_mlp"), "quick")
    keras_model, torch_model = small_batchnorm_model("keras"), small_batchnorm_model("torch")
    dual_backend.copy_weights(keras_model, torch_model)
    for model in (keras_model, torch_model):
        model.fit(prepared.x_train[:32], prepared.y_train[:32], epochs=1, shuffle=False, verbose=0)
    keras_weights, torch_weights = keras_model.get_weights(), torch_model.get_weights()
    moving = keras_weights[4:6]  # BatchNormalization: gamma, beta, moving mean, moving variance
    assert not np.allclose(moving[1], 1.0)  # the step did move the statistics
    assert parity.max_difference(keras_weights, torch_weights) <= parity.STEP_TOLERANCE


def test_same_start_same_order_steps_of_fashion_mlp_have_the_same_losses():
    # Measured here: the per-step losses of these 300 steps agree to 1.4e-5; over the full
    # epoch of 1,875 they drift to 0.05 (seed 0; 1e-4 to 0.08 over seeds 0-4) -- as far as
    # tf.keras drifts from itself with oneDNN switched off.
    check = parity.same_start_same_order("fashion_mlp", None, steps=300)
    assert check.difference <= parity.LOSS_TOLERANCE, check.line()


def test_same_start_same_order_epoch_of_fashion_mlp_has_the_same_mean_loss():
    # One full epoch, 1,875 steps: the epoch's mean loss differs by 4.2e-4 here.
    prepared = prepare_data(lessons.recipe("fashion_mlp"), "full")
    keras_model, torch_model = parity.build_pair("fashion_mlp", None, 0)
    dual_backend.copy_weights(keras_model, torch_model)
    losses = [model.fit(prepared.x_train, prepared.y_train, epochs=1, verbose=0, batch_order_seed=0)
              .history["loss"][0] for model in (keras_model, torch_model)]
    assert abs(losses[0] - losses[1]) <= parity.LOSS_TOLERANCE


def test_in_float64_same_start_same_order_is_one_run_over_several_epochs():
    parity.build_pair("fashion_mlp", None, 0)  # float32 models first, as in a full test run
    # float64 leaves training nothing to amplify: 3 epochs of 100 steps agree to ~1e-14 per step
    # here, so a difference in the update rule, the loss or any epoch's batch order shows at once.
    # (It showed two: Keras' float32-rounded Adam betas, 7e-9 on every weight after one step, and
    # keras training epoch 0 on epoch 1's permutation, other batches from the first step.)
    with precision.using("float64", dual_backend.BACKENDS):
        check = parity.same_start_same_order("fashion_mlp", None, steps=100, epochs=3)
    assert check.difference <= parity.FLOAT64_LOSS_TOLERANCE, check.line()
    # float32 again after the block, on both backends (Keras' dtype policy included).
    assert precision.floatx() == "float32"
    for model in parity.build_pair("fashion_mlp", None, 0):
        assert {w.dtype for w in model.get_weights()} == {np.dtype(np.float32)}


def test_denormal_floats_are_flushed_to_zero_on_both_backends_as_in_tensorflow():
    # hello_world is Dense(1): with kernel 0.5 and bias 0 it halves its input.  1e-38 is a normal
    # float32; half of it is a denormal, which TensorFlow's kernels flush to zero.
    x = np.array([[1e-38], [4.0]], dtype=np.float32)
    from torch_impl import process

    for backend in dual_backend.BACKENDS:
        model = dual_backend.build("hello_world", backend=backend, device="cpu")
        model.set_weights([np.array([[0.5]], np.float32), np.zeros(1, np.float32)])
        np.testing.assert_array_equal(model.predict(x), [[0.0], [2.0]], err_msg=backend)
    # The flags reach every intra-op thread (each thread has its own), and torch's own setting
    # is put back on all of them.
    import torch

    def denormal_bits():  # counted as integers: a flushing thread would count denormals as zeros
        return int(torch.count_nonzero((torch.full((4_000_000,), 1e-38) * 0.5).view(torch.int32)))

    torch.set_num_threads(2)
    assert not process.flushing_denormals() and denormal_bits() == 4_000_000
    with process.denormals_flushed():
        assert process.flushing_denormals() and denormal_bits() == 0
    assert not process.flushing_denormals() and denormal_bits() == 4_000_000


def test_fashion_cnn_activation_maps_are_equal_after_transfer():
    keras_model, torch_model = parity.build_pair("fashion_cnn", None, 0)
    dual_backend.copy_weights(keras_model, torch_model)
    images = prepare_data(lessons.recipe("fashion_cnn"), "quick").x_test[[0, 7, 26]]
    for keras_map, torch_map in zip(keras_model.layer_outputs(images)[:4], torch_model.layer_outputs(images)[:4]):
        assert keras_map.shape == torch_map.shape
        np.testing.assert_allclose(keras_map[..., 1], torch_map[..., 1], atol=1e-5)


def test_horse_or_human_pipelines_decode_the_same_pixels():
    import importlib

    _, validation_dir = data.horse_or_human_dirs()
    keras_x, keras_y = next(iter(importlib.import_module("keras_ref.horse_or_human")
                                 .validation_data(validation_dir, batch_size=16)))
    torch_x, torch_y = next(iter(importlib.import_module("torch_impl.horse_or_human")
                                 .validation_data(validation_dir, batch_size=16)))
    np.testing.assert_array_equal(np.asarray(keras_y), torch_y.numpy())
    np.testing.assert_allclose(np.asarray(keras_x), torch_x.permute(0, 2, 3, 1).numpy(), atol=1e-6)


def test_horse_or_human_prediction_on_one_file_is_equal_after_transfer():
    from dual_backend.images import load_images

    _, validation_dir = data.horse_or_human_dirs()
    image = load_images([validation_dir / "humans" / "valhuman01-00.png"], (300, 300))
    keras_model, torch_model = parity.build_pair("horse_or_human", None, 0)
    dual_backend.copy_weights(keras_model, torch_model)
    np.testing.assert_allclose(keras_model.predict(image), torch_model.predict(image), atol=1e-5)


def test_copy_between_different_architectures_names_the_layer():
    keras_model = dual_backend.build("fashion_mlp", backend="keras", device="cpu")
    torch_model = dual_backend.build("fashion_mlp", backend="torch", variant="width_512", device="cpu")
    with pytest.raises(DualBackendError, match=r"layer 1 is Dense \(None, 128\)"):
        dual_backend.copy_weights(keras_model, torch_model)


def test_parity_of_an_error_exercise_checks_both_backends_stop_with_the_error():
    found = parity.checks("fashion_mlp", "no_flatten", inputs=32)
    assert all(check.passed for check in found)
    assert any("stops before the first step" in check.name for check in found)


def test_the_contiguous_max_pool_is_torchs_own_bit_for_bit():
    """MaxPooling2D pools contiguous CPU tensors through a channels-last copy (torch's NCHW CPU kernel
    is ~20x slower); outputs and gradients must be exactly F.max_pool2d's, ties included."""
    import torch
    import torch.nn.functional as F

    from torch_impl.keras import MaxPooling2D

    generator = torch.Generator().manual_seed(0)
    for shape in [(4, 8, 26, 26), (4, 8, 11, 11), (2, 3, 7, 9)]:
        # Rounded to quarters: many windows hold the same positive maximum twice (ties).
        x = torch.relu(torch.randn(shape, generator=generator)).mul(4).round().div(4)
        results = []
        for pool in (lambda v: F.max_pool2d(v, 2, 2), MaxPooling2D((2, 2))):
            leaf = x.clone().requires_grad_(True)
            output = pool(leaf)
            output.backward(torch.arange(output.numel(), dtype=torch.float32).reshape(output.shape))
            results.append((output.detach(), leaf.grad))
        (expected, expected_grad), (got, got_grad) = results
        assert torch.equal(got, expected) and torch.equal(got_grad, expected_grad), shape
        with torch.no_grad():
            assert torch.equal(MaxPooling2D((2, 2))(x), F.max_pool2d(x, 2, 2))


# Every lesson's convolution followed by pooling (fashion_cnn's two, horse_or_human's four), and the
# edges of torch's own choice: one small image goes through torch's native kernel, and one-channel
# images permuted from NHWC (the front end's fashion_cnn batches) read as channels-last.
# A convolution without a bias (Conv2D(use_bias=False)) takes the same path.
# (input shape, filters, batch permuted from NHWC, whether the oneDNN path must be taken, use_bias)
CONV_THEN_POOL = [((32, 1, 28, 28), 64, False, True, True), ((32, 64, 13, 13), 64, False, True, True),
                  ((2, 1, 28, 28), 16, False, True, True), ((1, 1, 28, 28), 64, False, False, True),
                  ((32, 1, 28, 28), 64, True, False, True), ((1, 3, 300, 300), 16, False, True, True),
                  ((2, 16, 149, 149), 32, False, True, True), ((2, 32, 73, 73), 64, False, True, True),
                  ((2, 64, 35, 35), 64, False, True, True), ((8, 3, 30, 30), 16, False, True, False)]


@pytest.mark.parametrize("shape, filters, from_nhwc, onednn, use_bias", CONV_THEN_POOL)
def test_convolution_and_pooling_through_onednn_are_torchs_own_bit_for_bit(shape, filters, from_nhwc, onednn,
                                                                           use_bias, monkeypatch):
    """conv_then_pool keeps the convolution's output in oneDNN's layout for the pooling; outputs and
    the gradients of input, kernel and bias must be torch's layer-by-layer ones bit for bit (ties
    and zeros included, training and inference), and the oneDNN path must be the one taken where
    torch itself convolves NCHW with oneDNN."""
    import torch
    import torch.nn.functional as F

    from torch_impl.fast import cpu_kernels
    from torch_impl.fast.cpu_kernels import conv_then_pool
    from torch_impl.keras import Conv2D, MaxPooling2D

    used = []
    apply = cpu_kernels._OneDNNConvPool.apply
    monkeypatch.setattr(cpu_kernels._OneDNNConvPool, "apply", lambda *args: used.append(1) or apply(*args))
    generator = torch.Generator().manual_seed(0)
    # Quarter steps with a blank third (as the images' backgrounds): the convolution's output is
    # its bias there, so every window ties; zeros after the ReLU.
    x = torch.relu(torch.randn(shape, generator=generator)).mul(4).round().div(4)
    x[:, :, :shape[2] // 3] = 0
    if from_nhwc:
        x = torch.empty(shape[0], *shape[2:], shape[1]).copy_(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
    conv = Conv2D(filters, 3, use_bias=use_bias)
    conv.build((shape[2], shape[3], shape[1]))
    torch.nn.init.normal_(conv.kernel, std=(9 * shape[1]) ** -0.5, generator=generator)
    if use_bias:
        torch.nn.init.normal_(conv.bias, std=0.1, generator=generator)
    grad = torch.randn(shape[0], filters, (shape[2] - 2) // 2, (shape[3] - 2) // 2, generator=generator)
    results = []
    for pooled in (lambda v: F.max_pool2d(conv.convolve(v), 2, 2), lambda v: conv_then_pool(conv, MaxPooling2D(2), v)):
        conv.zero_grad()
        leaf = x.detach().clone(memory_format=torch.preserve_format).requires_grad_(shape[1] > 1)
        output = pooled(leaf)
        output.backward(grad)
        with torch.no_grad():
            inferred = pooled(x)
        results.append([output.detach(), conv.kernel.grad, conv.bias.grad if use_bias else None, leaf.grad,
                        inferred])
    bits = [[t.contiguous().view(torch.int32) if t is not None else None for t in found] for found in results]
    for expected, got, name in zip(*bits, ["output", "kernel gradient", "bias gradient", "input gradient",
                                           "inference output"]):
        assert (got is None and expected is None) or torch.equal(got, expected), name
    assert len(used) == (2 if onednn else 0)  # training and inference


def test_a_second_backward_pass_through_onednn_convolution_and_pooling_says_why_it_cannot():
    import torch

    from torch_impl.fast.cpu_kernels import conv_then_pool
    from torch_impl.keras import Conv2D, MaxPooling2D

    conv = Conv2D(4, 3)
    conv.build((8, 8, 1))
    output = conv_then_pool(conv, MaxPooling2D(2), torch.rand(2, 1, 8, 8)).sum()
    output.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="a second time: its oneDNN buffers were freed"):
        output.backward()


@pytest.mark.parametrize("lesson", ["fashion_cnn", "horse_or_human"])
def test_pooling_before_the_relu_is_the_layer_by_layer_model_bit_for_bit(lesson):
    """Sequential.hidden applies a Conv2D's ReLU after the MaxPooling2D that follows it; the loss,
    every gradient and the predictions must be exactly those of the layers one after another."""
    import torch

    from torch_impl.keras import keras_loss

    torch_model = dual_backend.build(lesson, backend="torch", device="cpu")
    module = torch_model.module
    shape = (6, 1, 28, 28) if lesson == "fashion_cnn" else (2, 3, 300, 300)
    # Quarter steps: ties in the pooling windows, and exact zeros after the ReLUs.
    x = torch.rand(shape, generator=torch.Generator().manual_seed(0)).mul(4).round().div(4)
    y = torch.tensor([0, 1, 2, 3, 4, 5])[:shape[0]] if lesson == "fashion_cnn" else torch.tensor([[0.0], [1.0]])

    def layer_by_layer(v):
        for layer in module.body[:-1]:
            v = layer(v)
        return module.body[-1].logits(v)

    results = []
    for logits in (layer_by_layer, module.logits):
        module.zero_grad()
        loss = keras_loss(module.keras_loss, logits(x), y, module.head_activation)
        loss.backward()
        results.append((loss.detach(), [p.grad.clone() for p in module.parameters()]))
    (expected_loss, expected_grads), (loss, grads) = results
    assert torch.equal(loss, expected_loss)
    assert all(torch.equal(got, expected) for got, expected in zip(grads, expected_grads))
    with torch.no_grad():
        assert torch.equal(module(x), module.body[-1](torch.nn.Sequential(*module.body[:-1])(x)))


def test_keras_optimizers_step_alike_with_and_without_torchs_profiler_and_step_hooks(monkeypatch):
    """KerasOptimizer skips torch's record_function annotations while nobody records; under a
    profiler, or with a step hook registered, it steps through torch's wrapper.  Same updates all
    three ways; the hook runs once a step; the profiler still sees the optimizer's annotations."""
    import contextlib

    import torch

    from torch_impl.keras import KerasAdam, KerasRMSprop

    opened = []  # record_function annotations entered: none while nobody records
    enter = torch.autograd.profiler.record_function.__enter__
    monkeypatch.setattr(torch.autograd.profiler.record_function, "__enter__",
                        lambda self: opened.append(self.name) or enter(self))
    for optimizer_class in (KerasAdam, KerasRMSprop):
        results, hook_calls, annotations = [], [], set()
        for way in ("quiet", "hooked", "profiled"):
            weights = torch.nn.Parameter(torch.linspace(-1, 1, 7))
            optimizer = optimizer_class([weights])
            if way == "hooked":
                optimizer.register_step_post_hook(lambda *args: hook_calls.append(1))
            opened.clear()
            with torch.profiler.profile() if way == "profiled" else contextlib.nullcontext() as profile:
                for _ in range(3):
                    optimizer.zero_grad()
                    (weights ** 3).sum().backward()
                    optimizer.step()
            if way == "quiet":
                assert opened == [], opened
            if profile is not None:
                annotations = {event.name.split("#")[0] for event in profile.events()}
            results.append(weights.detach().clone())
        assert all(torch.equal(result, results[0]) for result in results[1:]), optimizer_class
        assert len(hook_calls) == 3
        assert {"Optimizer.step", "Optimizer.zero_grad"} <= annotations


@pytest.mark.parametrize("layout", ["the weight's (torch's fused kernel)",
                                    "gradient unlike the weight (copied, fused kernel)",
                                    "state unlike the weight (foreach)",
                                    "a GPU's (step size on the device; run here on the CPU)"])
def test_keras_adam_applies_keras_update_rule_in_float64(layout, monkeypatch):
    """KerasAdam on the CPU goes through torch's fused Adam kernel with a learning rate and ε
    rescaled into Keras' update (a gradient laid out unlike its weight is copied into its layout),
    or through foreach ops when the optimizer's state is laid out unlike its weight (the kernel
    walks them all as flat arrays); on a GPU it computes the step size on the device from a
    count kept there (what lets a CUDA graph replay the step).  In float64 all
    must be Keras' rule written out (m, v with Python's 1 − β, α with float32-rounded betas) to
    rounding: feeding the kernel float32-rounded betas, say, is 7e-9 off."""
    import torch

    from torch_impl.fast import adam
    from torch_impl.keras import KerasAdam
    from torch_impl.keras.optimizers import keras_step_size

    fused_calls = []
    kernel = torch._fused_adam_
    monkeypatch.setattr(torch, "_fused_adam_", lambda *a, **k: fused_calls.append(1) or kernel(*a, **k))
    generator = torch.Generator().manual_seed(0)
    weights = torch.nn.Parameter(torch.randn(6, 5, generator=generator, dtype=torch.float64))
    optimizer = KerasAdam([weights])
    if layout.startswith("a GPU"):
        monkeypatch.setattr(adam, "steps_on_device", lambda weight: True)
    if layout.startswith("state"):  # as if loaded from a checkpoint of a transposed layout
        for name in ("momentum", "velocity"):
            optimizer.state[weights][name] = torch.zeros(5, 6, dtype=torch.float64).t()
    expected, m, v = weights.detach().clone(), torch.zeros_like(weights), torch.zeros_like(weights)
    for t in range(1, 6):
        gradient = torch.randn(5, 6, generator=generator, dtype=torch.float64).t() * 10.0 ** -t
        weights.grad = gradient if layout.startswith("gradient") else gradient.contiguous()
        optimizer.step()
        alpha = float(keras_step_size(1e-3, 0.9, 0.999, t, torch.float64))
        m = m + (gradient - m) * (1 - 0.9)
        v = v + (gradient * gradient - v) * (1 - 0.999)
        expected = expected - alpha * m / (v.sqrt() + 1e-7)
        assert (weights.detach() - expected).abs().max() <= 1e-15
    assert len(fused_calls) == (0 if layout.startswith(("state", "a GPU")) else 5)
    if layout.startswith("a GPU"):
        assert float(optimizer.param_groups[0]["iterations_on_device"]) == 5


def test_steps_handed_to_lightning_in_chunks_are_the_steps_taken_one_at_a_time():
    """Without a callback that must see every batch, the torch backend hands Lightning 32 steps at a
    time and steps the optimizer directly; weights and Lightning's step count (what checkpoints go
    by) must be those of one step per Lightning batch."""
    from dual_backend.callbacks import Callback

    class EveryBatch(Callback):
        def on_train_batch_end(self, batch, logs=None):
            self.batches = getattr(self, "batches", 0) + 1

    prepared = prepare_data(lessons.recipe("fashion_mlp"), "quick")
    x, y = prepared.x_train[:2000], prepared.y_train[:2000]  # 63 steps an epoch, the last one of 16
    runs = []
    for callbacks in ([], [EveryBatch()]):
        dual_backend.backend_package("torch").seed(0)
        model = dual_backend.build("fashion_mlp", backend="torch", device="cpu", hidden_units=16)
        history = model.fit(x, y, epochs=2, callbacks=callbacks, verbose=0)
        runs.append((model.get_weights(), history.history, model.module.trainer.global_step))
    (chunked, chunked_history, chunked_steps), (single, single_history, single_steps) = runs
    assert callbacks[0].batches == 2 * 63
    assert all(np.array_equal(a, b) for a, b in zip(chunked, single))
    assert chunked_history == single_history
    assert chunked_steps == single_steps == 2 * 63
