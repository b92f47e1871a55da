"""``torch_impl/plain_loop.py``, the plain PyTorch loop, trains what the torch backend's ``fit`` trains."""

import numpy as np

import dual_backend


def test_plain_loop_takes_the_torch_backends_steps():
    """One unshuffled epoch from the same weights: Lightning's fit (32 steps per Lightning batch)
    and the written-out loop end on the same weights and count the same right predictions."""
    from torch_impl import plain_loop, process

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (160, 28, 28), dtype=np.uint8).astype(np.float32) / 255
    y = rng.integers(0, 10, 160)
    fitted = dual_backend.build("fashion_mlp", backend="torch", device="cpu")
    module = plain_loop.build("fashion_mlp", input_shape=(28, 28))
    module.set_weights(fitted.get_weights())
    history = fitted.fit(x, y, epochs=1, batch_size=32, shuffle=False, verbose=0)

    optimizer = module.configure_optimizers()
    x_tensor, y_tensor = plain_loop.as_tensors(module, x, y, "cpu", batch_size=32)
    # The backend's settings for a Dense model on the CPU: one intra-op thread, denormals flushed.
    with process.denormals_flushed(), process.intra_op_threads(1):
        correct, seen = plain_loop.train_epoch(module, optimizer,
                                               plain_loop.shuffled_batches(module, x_tensor, y_tensor, 32,
                                                                           shuffle=False))
    for trained, looped in zip(fitted.get_weights(), module.get_weights()):
        np.testing.assert_array_equal(trained, looped)
    assert seen == 160 and correct / seen == history.history["accuracy"][0]
    _, evaluated = fitted.evaluate(x, y)
    assert plain_loop.accuracy(module, x_tensor, y_tensor) == evaluated
