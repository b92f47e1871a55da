"""On a CUDA GPU (skipped without one): the torch backend's training step captured as a CUDA graph
(``StepGraph``) is the op-by-op step, bit for bit, and a fit takes it.

The accuracy ranges on the GPU, both backends, are in tests/lessons/test_training.py (``-m gpu``).
"""

import json

import numpy as np
import pytest

import dual_backend
from dual_backend import lessons
from dual_backend.run import prepare_data, run_lesson
from tests.conftest import cuda_available

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not cuda_available(), reason="needs a CUDA GPU")]

# 10 full batches and a short one, twice over: capture after the warm-up, replays, an op-by-op short step
STEPS, SHORT = 10, 16


def _model(lesson, variant):
    dual_backend.backend_package("torch").seed(0)
    return dual_backend.build(lesson, backend="torch", variant=variant, device="gpu")


def _steps(model, lesson, variant):
    """The data tensors on the GPU and each step's rows, shuffled, as ``TensorBatches`` hands them."""
    import torch

    prepared = prepare_data(lessons.recipe(lesson, variant), "quick")
    count = STEPS * 32 + SHORT
    x, (y,) = model._inputs(prepared.x_train[:count]), model._tensors(prepared.y_train[:count])
    order = torch.randperm(count, generator=torch.Generator().manual_seed(1)).cuda()
    return (x, y), [order[i:i + 32] for i in range(0, count, 32)]


@pytest.mark.parametrize("lesson, variant, optimizer", [
    ("fashion_mlp", None, None), ("fashion_mlp", None, "rmsprop"), ("fashion_cnn", None, None),
    ("keras_basics", "deep_batchnorm", None)])  # torch's SGD
def test_a_captured_training_step_is_the_op_by_op_step_bit_for_bit(lesson, variant, optimizer):
    import torch

    from torch_impl.fast.cuda_graph import StepGraph

    runs = []
    for graphed in (True, False):
        model = _model(lesson, variant)
        module = model.module.cuda().train()
        module.keras_optimizer = optimizer or module.keras_optimizer
        step_optimizer = module.configure_optimizers()
        assert StepGraph.fits(module, step_optimizer)
        graph = StepGraph(module, step_optimizer) if graphed else None
        tensors, steps = _steps(model, lesson, variant)
        losses, epoch_logs = [], []
        for _ in range(2):
            module.train_means.reset()
            for rows in steps:
                loss = graph(tensors, rows) if graphed else \
                    module.train_step_eagerly(tuple(t[rows] for t in tensors), step_optimizer)
                losses.append(loss.clone())
            epoch_logs.append(module.train_means.compute())
        if graphed:
            assert graph.graph is not None and graph.warm_steps == StepGraph.WARMUP
        torch.cuda.synchronize()
        runs.append({"weights": [p.detach().cpu().numpy() for p in module.parameters()]
                     + [b.detach().cpu().numpy() for b in module.buffers()],
                     "state": [s.cpu().numpy() for p in module.parameters() for s in step_optimizer.state[p].values()
                               if isinstance(s, torch.Tensor)],
                     "losses": torch.stack(losses).cpu().numpy(), "logs": epoch_logs,
                     "iterations": step_optimizer.param_groups[0].get("iterations")})
    graphed, eager = runs
    assert graphed["iterations"] == eager["iterations"] in (2 * (STEPS + 1), None)  # None: torch's SGD
    assert graphed["logs"] == eager["logs"]
    np.testing.assert_array_equal(graphed["losses"], eager["losses"])
    for name in ("weights", "state"):
        assert len(graphed[name]) == len(eager[name])
        for a, b in zip(graphed[name], eager[name]):
            np.testing.assert_array_equal(a, b, err_msg=name)


def test_a_fit_on_the_gpu_replays_its_graph_and_has_the_op_by_op_history(monkeypatch, tmp_path):
    from torch_impl.fast.cuda_graph import StepGraph

    captures = []
    capture = StepGraph._capture
    monkeypatch.setattr(StepGraph, "_capture", lambda self, x, y: captures.append(1) or capture(self, x, y))
    results = []
    for graphs in ("1", "0"):
        monkeypatch.setenv("DUAL_BACKEND_CUDA_GRAPHS", graphs)
        results.append(run_lesson("fashion_mlp", "torch", profile="quick", seed=0, device="gpu",
                                  out=tmp_path / graphs, verbose=0))
    assert captures == [1]  # one graph for the fit, replayed over every epoch
    graphed, eager = results
    assert graphed["device"] == "gpu" and graphed["epochs_run"] > 1
    histories = [json.loads((tmp_path / graphs / "torch" / "history.json").read_text()) for graphs in ("1", "0")]
    assert histories[0] == histories[1] and graphed["test"] == eager["test"]
