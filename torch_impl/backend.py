"""The torch backend behind the front end: a lesson's LightningModule, trained by Lightning's Trainer.

Mirror of ``keras_ref/backend.py``.  What Keras does inside ``fit`` is done
here with Lightning's pieces: the Trainer runs the loop, a Lightning callback
carries the user's Keras-style callbacks, and the batches are sliced from
tensors already on the target device, reshuffled every epoch as Keras does.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import re
import signal
import threading
import warnings
from pathlib import Path

import lightning as L
import numpy as np
import torch

from dual_backend.callbacks import CallbackList
from dual_backend.environments import cuda_libraries_advice
from dual_backend.errors import DualBackendError, refused_code
from dual_backend.interrupts import atomic_write
from dual_backend.model import Model, require_gpus
from torch_impl import process
from torch_impl.batches import CheckedBatches, Repeat, StreamEpochs, TensorBatches, released
from torch_impl.callbacks import AtomicCheckpointIO, KerasCallbacks, backup_to_resume, lightning_counterparts
from torch_impl.keras.optimizers import KerasOptimizer

# The .pt files ``TorchModel.save`` writes: format 2 keys the weights by Keras' names (``dense_1.kernel``,
# ``Sequential.keras_named``); format 1 files, keyed ``body.1.linear.weight``, still load.
FORMAT, FORMAT_1 = "dual-backend/torch/2", "dual-backend/torch/1"
# The entry of a Lightning checkpoint (``.ckpt``) that ``TorchModel.save`` wrote holding what its ``.pt`` files
# keep beside the weights: Lightning's own entries say nothing of which module they belong to.
MODEL_ENTRY = "dual_backend_model"


class SavedModelEntry(L.Callback):
    """Adds :data:`MODEL_ENTRY` to the checkpoint the Trainer writes."""

    def __init__(self, saved_model: dict):
        self.saved_model = saved_model

    def on_save_checkpoint(self, trainer, module, checkpoint):
        checkpoint[MODEL_ENTRY] = self.saved_model


def select_device(device: str) -> str:
    """``cpu``, ``gpu`` or ``auto`` (a GPU when torch sees one) → the device actually used."""
    if device == "gpu" and not torch.cuda.is_available():
        raise DualBackendError(
            "--device gpu was asked for, but torch sees no CUDA GPU. Use --device cpu or auto, "
            "or install a CUDA build of torch on a machine with an NVIDIA GPU."
        )
    if device == "auto":
        device = "gpu" if torch.cuda.is_available() else "cpu"
    if device == "gpu" and (advice := cuda_libraries_advice("torch")):
        warnings.warn(advice, stacklevel=2)
    return device


def seed(value: int) -> None:
    """Seed Python, numpy and torch, and ask torch for deterministic kernels (what Lightning's
    ``Trainer(deterministic=True)`` sets): two CPU runs with one seed give the same weights, bit for bit.
    On a GPU a kernel without a deterministic version warns instead of failing."""
    L.seed_everything(value, workers=True, verbose=False)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS' condition for reproducible sums
    torch.use_deterministic_algorithms(True, warn_only=True)
    # Deterministic mode also fills every new tensor with NaN, to expose reads of memory nothing
    # wrote: a debugging aid that changes no result and costs time on every step (docs/speed.md).
    torch.utils.deterministic.fill_uninitialized_memory = False
    torch.backends.cudnn.benchmark = False


STEPS_PER_CHUNK = 32


def set_floatx(name: str) -> None:
    """torch's default dtype: the parameters, buffers and optimizer slots created after it."""
    torch.set_default_dtype(getattr(torch, name))


@contextlib.contextmanager
def interrupts_as_in_keras():
    """Ctrl-C during a Trainer's ``fit`` (or ``validate``, ``predict``) raises ``KeyboardInterrupt``, as it
    does in Keras.

    Lightning answers it with a graceful shutdown (the callbacks'
    ``on_exception``, the loggers closed), then ``sys.exit(1)``, and leaves
    Ctrl-C ignored for the rest of the process: in a notebook, no later cell
    could be interrupted.  Here the ``KeyboardInterrupt`` goes on after the
    shutdown, and Ctrl-C's handler is put back.
    """
    main = threading.current_thread() is threading.main_thread()
    handler = signal.getsignal(signal.SIGINT) if main else None
    try:
        yield
    except SystemExit as exit_:
        if isinstance(exit_.__context__, KeyboardInterrupt):
            raise exit_.__context__ from None
        raise
    finally:
        if main:
            signal.signal(signal.SIGINT, handler)


class TorchModel(Model):
    backend = "torch"

    def __init__(self, module, lesson, variant, options, device, devices=1):
        super().__init__(lesson, variant, options, select_device(device))
        self.devices = devices
        self.module = module
        self.torch_device = torch.device("cuda" if self.device == "gpu" else "cpu")
        self.name = lesson or module.model_name
        self.input_shape, self.output_shape = module.input_shape, module.output_shape
        self.optimizer, self.loss, self.metrics = module.keras_optimizer, module.keras_loss, module.keras_metrics

    def _built_optimizer(self, description):
        from torch_impl.user_model import optimizer

        return optimizer(description)

    def _compile(self, optimizer, loss, metrics):
        self.module.compile(optimizer=optimizer, loss=loss, metrics=metrics, from_logits=self.from_logits)

    def _trainer(self, **settings) -> L.Trainer:
        precision = "bf16-mixed" if self.speedups.precision == "bf16" else "32-true"
        settings = {"logger": False, "enable_checkpointing": False, "devices": 1, "precision": precision, **settings}
        return L.Trainer(
            accelerator=self.device, enable_progress_bar=False, enable_model_summary=False,
            num_sanity_val_steps=0, plugins=[AtomicCheckpointIO()], **settings,
        )

    def _scale_out(self) -> dict:
        """Lightning's DDP over ``devices`` processes (gloo on the CPU, NCCL on GPUs).

        Lightning starts the other processes by running this program's command
        line again; they train with rank 0 and stop after ``fit``
        (``dual_backend.run`` returns at once in them)."""
        if self.devices == 1:
            return {}
        if self.device == "gpu":
            require_gpus(self.devices, torch.cuda.device_count(), "torch")
        return {"devices": self.devices, "strategy": "ddp"}

    def _is_pipeline(self, x) -> bool:
        return isinstance(x, (torch.utils.data.DataLoader, Repeat))

    def _is_optimizer(self, optimizer) -> bool:
        # An optimizer before the parameters exist: a factory such as torch_impl.keras.RMSprop(...).
        return callable(optimizer)

    def _tensors(self, *arrays):
        return [torch.from_numpy(np.ascontiguousarray(a)).to(self.torch_device) for a in arrays]

    def _inputs(self, x):
        """Keras' NHWC images as the NCHW tensor a convolutional module computes on."""
        (x,) = self._tensors(x)
        return self.module.in_memory_format(x.permute(0, 3, 1, 2)) if self.module.channels_first and x.dim() == 4 \
            else x

    def _batches(self, x, y=None, batch_size=32, batch_orders=False, sample_weight=None, **chunking):
        """The arrays as :class:`TensorBatches` of ``(x, y)``, or ``(x, y, sample_weight)``."""
        tensors = [self._inputs(x)] + ([] if y is None else self._tensors(y))
        if sample_weight is not None:
            tensors += self._tensors(sample_weight)
        return TensorBatches(*tensors, batch_size=batch_size, batch_orders=batch_orders, **chunking)

    @property
    def threads(self) -> int | None:
        """One intra-op thread for models without convolutions on the CPU.

        A Dense step at batch 32 is too small to split: two threads are no
        faster than one, and when anything else wants a core, torch's OpenMP
        threads wait on each other at every op (docs/speed.md).
        """
        return 1 if self.device == "cpu" and not self.module.channels_first else None

    @contextlib.contextmanager
    def _computing(self):
        """What every fit, evaluate and predict runs in: Keras' float environment (denormals flushed
        to zero on all of torch's threads, as TensorFlow does), freed memory kept for the next step,
        the thread count, Lightning's messages that do not apply here silenced, and Keras' handling
        of Ctrl-C and SIGTERM (``torch_impl.process``)."""
        layout, self.module.keras_layout_batches = self.module.keras_layout_batches, False  # NCHW batches here
        try:
            with process.denormals_flushed(), process.freed_memory_kept(), process.intra_op_threads(self.threads), \
                    process.lightning_quiet(), interrupts_as_in_keras():
                yield
        finally:
            self.module.keras_layout_batches = layout

    def to_lightning(self) -> L.LightningModule:
        """The model's own LightningModule, for your own ``lightning.Trainer``: its weights, Keras' loss,
        optimizer and metrics as compiled, one Keras step per batch.  A ``DataLoader`` of ``(x, y)``
        batches in Keras' layout (images NHWC, integer labels int64 for the sparse loss) trains it as
        ``fit`` would over the same batches.  It stays this model's module: what either trains, both have.

        Its parameters and buffers carry Keras' variable paths, the model's name left out:
        ``dense_1.kernel``, ``conv2d.bias``, ``batch_normalization.moving_mean`` (as
        ``[v.path for v in model.weights]`` gives ``sequential/dense_1/kernel``), the same in every
        process for the same definition.  The tensors keep torch's layout: a Dense kernel is (units,
        inputs) for ``F.linear``, a Conv2D kernel (filters, channels, height, width) for ``F.conv2d``;
        ``get_weights()`` gives Keras' layout."""
        if self.loss is None:
            raise DualBackendError("The model must be compiled before to_lightning: call model.compile(...) first.")
        self.module.keras_layout_batches = True
        return self.module

    def _fit(self, *args, **settings):
        with self._computing():
            return self._fit_here(*args, **settings)

    def _fit_here(self, x, y, epochs, batch_size, validation_data, callbacks, batch_orders, steps_per_epoch,
                  framework_callbacks,
                  initial_epoch=0, sample_weight=None, validation_batch_size=None):
        if self.devices > 1 and batch_size % self.devices:
            raise DualBackendError(f"batch_size {batch_size} does not split evenly over {self.devices} devices: "
                                   f"choose a multiple of {self.devices}.")
        logger, lightning_callbacks, keras_rules = lightning_counterparts(framework_callbacks)
        if keras_rules:  # after the front end's own callbacks, as Keras runs its callbacks after the adapter
            callbacks = CallbackList([*callbacks.callbacks, *keras_rules], callbacks.model, callbacks.params)
        adapter = KerasCallbacks(callbacks, self, initial_epoch)
        trainer = self._trainer(**self._scale_out(), max_epochs=max(epochs - initial_epoch, 0),
                                callbacks=[adapter, *lightning_callbacks], logger=logger,
                                log_every_n_steps=1,  # only epoch logs are written; silences a warning
                                limit_train_batches=(steps_per_epoch or 1.0) if self._is_pipeline(x) else 1.0,
                                limit_val_batches=1.0 if validation_data is not None else 0)
        # A callback that must see every batch gets Lightning's batches one step each; so does DDP,
        # whose gradient hooks expect one backward pass per Lightning step.
        chunk = 1 if callbacks.wants_every_batch or self.devices > 1 else STEPS_PER_CHUNK
        if isinstance(x, Repeat):  # Keras reads a repeated pipeline on across epochs
            train = StreamEpochs(CheckedBatches(x, self), steps_per_epoch)
        elif self._is_pipeline(x):
            train = CheckedBatches(x, self)
        else:
            train = self._batches(x, y, batch_size, batch_orders, steps=steps_per_epoch, steps_per_chunk=chunk,
                                  sample_weight=sample_weight)
        val = validation_data
        if self._is_pipeline(validation_data):
            val = CheckedBatches(validation_data, self, "the validation pipeline")
        elif validation_data is not None:
            val = self._batches(*validation_data, batch_size=validation_batch_size or batch_size)
        self.module.val_means.reset()
        try:
            if epochs > initial_epoch:  # Keras trains nothing from an initial_epoch at or past epochs
                trainer.fit(self.module, train_dataloaders=train, val_dataloaders=val,
                            ckpt_path=backup_to_resume(framework_callbacks), weights_only=True)
        finally:
            released(train, val)
        self.rank = trainer.global_rank
        return dict(adapter.history)

    def _evaluate(self, x, y, batch_size, callbacks, sample_weight=None, steps=None):
        batches = CheckedBatches(x, self) if self._is_pipeline(x) else \
            self._batches(x, y, batch_size, sample_weight=sample_weight)
        with self._computing():  # the Trainer announces itself as it is made
            trainer = self._trainer(callbacks=[KerasCallbacks(callbacks, self)], limit_val_batches=steps or 1.0)
            try:
                trainer.validate(self.module, batches, verbose=False)
            finally:
                released(batches)
        return self.module.val_means.compute()

    def _predict(self, x, batch_size, callbacks, steps=None):
        batches = CheckedBatches(x, self) if self._is_pipeline(x) else self._batches(x, batch_size=batch_size)
        with self._computing():
            trainer = self._trainer(callbacks=[KerasCallbacks(callbacks, self)], limit_predict_batches=steps or 1.0)
            try:
                predictions = trainer.predict(self.module, batches)
            finally:
                released(batches)
        return torch.cat(predictions).cpu().numpy()

    def _get_weights(self):
        return self.module.get_weights()

    def _set_weights(self, weights):
        self.module.set_weights(weights)

    def _layer_outputs(self, x):
        self.module.to(self.torch_device).eval()
        with torch.no_grad():
            return [output.cpu().numpy() for output in self.module.layer_outputs(self._inputs(x))]

    def layer_rows(self):
        module = self.module
        return [
            (name, layer.keras_type, shape, sum(t.numel() for t in (*layer.parameters(), *layer.buffers())))
            for name, layer, shape in zip(module.layer_names, module.body, module.output_shapes)
        ]

    def trainable_params(self) -> int:
        return sum(p.numel() for p in self.module.parameters() if p.requires_grad)

    def save(self, path) -> None:
        """A ``.pt`` file of tensors and plain values, loadable with ``weights_only=True``; or, named
        ``.keras`` (or ``.h5``), Keras' own archive (legacy file), which tf.keras loads
        (``dual_backend.keras_file``); or, named ``.ckpt``, Lightning's checkpoint, which a Trainer
        resumes from (:meth:`_save_lightning`)."""
        path = Path(path)
        if path.suffix in (".keras", ".h5"):
            self._save_keras(path)
            return
        if path.suffix == ".ckpt":
            self._save_lightning(path)
            return
        if path.suffix != ".pt":
            raise DualBackendError(f"torch models are saved as .pt files (or as .keras files for tf.keras, .ckpt "
                                   f"for Lightning's Trainer), got {path}.")
        checkpoint = {**self._saved_model(), "state_dict": {k: v.cpu() for k, v in self.module.state_dict().items()}}
        atomic_write(path, lambda temporary: torch.save(checkpoint, temporary))

    def _saved_model(self) -> dict:
        """What a saved file keeps beside the weights to build the model again: the lesson, variant and
        options, or the ``dual_backend.keras`` definition, and the compile settings."""
        return {
            "format": FORMAT, "lesson": self.lesson, "variant": self.variant,
            "options": self.options, "optimizer": self.optimizer if isinstance(self.optimizer, str) else None,
            "loss": self.loss, "from_logits": self.from_logits, "metrics": self.metrics,
            "definition": self.definition(),
        }

    def _save_lightning(self, path) -> None:
        """Lightning's checkpoint, written by ``Trainer.save_checkpoint``: the weights under their Keras names,
        the optimizer's state, Keras' step count as ``global_step``, and the model's definition
        (:data:`MODEL_ENTRY`).  ``Trainer.fit(model.to_lightning(), ..., ckpt_path=path)`` trains on from it.
        Its epoch is 0, as a Keras file does not record how many epochs it trained: ``Trainer(max_epochs=N)``
        trains N more."""
        with process.lightning_quiet():
            trainer = self._trainer(callbacks=[SavedModelEntry(self._saved_model())])
        # A Trainer saves the module it is connected to: here one it has not fit, with the optimizer fit would make.
        trainer.strategy.connect(self.module)
        if self.loss is not None:
            optimizer = self.module.configure_optimizers()
            trainer.strategy.optimizers = [optimizer]
            # Lightning's global_step for a module that steps its optimizer itself (automatic_optimization off).
            steps = trainer.fit_loop.epoch_loop.manual_optimization.optim_step_progress.total
            steps.ready = steps.completed = int(optimizer.param_groups[0].get("iterations", 0))
        trainer.save_checkpoint(path, weights_only=False)  # whole or not at all: AtomicCheckpointIO

    def _save_keras(self, path) -> None:
        from dual_backend import keras_file
        from torch_impl.user_model import definition_of

        definition = definition_of(self)
        lesson = {"lesson": self.lesson, "variant": self.variant, "options": self.options} if self.lesson else None
        if path.suffix == ".h5":  # Keras' legacy full-model file: no optimizer variables, as Keras 3 writes it
            keras_file.write_legacy_h5(path, definition, self.get_weights(), loss=self.loss,
                                       from_logits=self.from_logits, metrics=self.metrics)
            return
        keras_file.write(path, definition, self.get_weights(), loss=self.loss, from_logits=self.from_logits,
                         metrics=self.metrics, optimizer_variables=self._keras_optimizer_variables(definition),
                         dual_backend=lesson)

    def _keras_optimizer_variables(self, definition) -> list:
        return self.optimizer_variables(*definition["optimizer"]) if self.loss is not None and \
            definition["optimizer"] else []

    def _save_weights(self, path) -> None:
        from dual_backend import keras_file
        from torch_impl.user_model import definition_of

        definition = definition_of(self)
        keras_file.write_weights(path, definition, self.get_weights(), self._keras_optimizer_variables(definition))

    def _load_weights(self, path) -> None:
        from dual_backend import keras_file
        from torch_impl.user_model import definition_of

        definition = definition_of(self)
        weights, variables = keras_file.read_weights(path, definition)
        self.set_weights(weights)
        if variables and definition["optimizer"] and self.loss is not None:
            self.set_optimizer_variables(*definition["optimizer"], variables)

    def optimizer_variables(self, kind: str, settings: dict) -> list:
        """The optimizer's state as Keras' ``optimizer.variables``: the step count, the learning rate, then
        each trained weight's slots (Adam's momentum and velocity, ...) in Keras' layout and order;
        zeros before the first fit, as Keras' optimizer starts."""
        from dual_backend import keras_file

        optimizer, trained = self.module.kept_optimizer, self.module.trained_keras_tensors()
        slots = {name: [] for name in keras_file.optimizer_slot_names(kind, settings)}
        for layer, index, tensor in trained:
            state = optimizer.state.get(tensor, {}) if optimizer is not None else {}
            for name, arrays in slots.items():
                value = state.get(name, torch.zeros_like(tensor))
                arrays.append(np.array(layer.to_keras(index, value.detach().cpu().float().numpy())))
        iterations = optimizer.param_groups[0].get("iterations", 0) if optimizer is not None else 0
        return keras_file.variables_from_slots(kind, settings, iterations, slots, len(trained))

    def set_optimizer_variables(self, kind: str, settings: dict, variables: list) -> None:
        """Take Keras' optimizer variables (see :meth:`optimizer_variables`): the next ``fit`` continues
        from that state, as it would in Keras.  Raises ``DualBackendError`` when they do not fit the model."""
        from dual_backend import keras_file

        trained = self.module.trained_keras_tensors()
        iterations, slots = keras_file.slots_from_variables(kind, settings, variables, len(trained))
        optimizer = self.module.configure_optimizers()
        if not isinstance(optimizer, KerasOptimizer):
            return  # torch's SGD without momentum: no state beyond the step count, which nothing reads
        for position, (layer, index, tensor) in enumerate(trained):
            for name, arrays in slots.items():  # none before the first step: each starts at zeros, as in Keras
                value = layer.from_keras(index, np.asarray(arrays[position], dtype=np.float32))
                if tuple(value.shape) != tuple(tensor.shape):
                    raise DualBackendError(f"The optimizer's {name} for weight {position} has shape "
                                           f"{np.asarray(arrays[position]).shape}, not that of the weight.")
                optimizer.state[tensor][name] = torch.from_numpy(np.ascontiguousarray(value)).to(tensor)
        for group in optimizer.param_groups:
            group["iterations"] = iterations

    def _read_backup(self, path) -> dict:
        checkpoint = load_tensors(path, "a readable backup", fix="Delete it to start over.")
        if not isinstance(checkpoint, dict) or "dual_backend" not in checkpoint:
            raise DualBackendError(f"{path} is not a readable backup (no 'dual_backend' entry). "
                                   "Delete it to start over.")
        return checkpoint["dual_backend"]["record"]


def load_tensors(path, what: str, fix: str = "Delete it, or save it again."):
    """``torch.load`` with ``weights_only=True``: tensors and plain values, never code.

    An unrestricted unpickle would run whatever a booby-trapped file asks for;
    here such a file is refused, naming the function it asks for.
    """
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        found = re.search(r"GLOBAL (\S+)", str(error))
        raise refused_code(path, what, f" ({found.group(1)})" if found else "") from None
    except Exception as error:  # noqa: BLE001 - any unreadable file gets the same advice
        raise DualBackendError(f"{path} is not {what} ({error}). {fix}") from None


def build(program, recipe, options, device, devices=1, speedups=None) -> TorchModel:
    module = program.build_model(input_shape=recipe.lesson.input_shape, **options)
    model = TorchModel(module, recipe.lesson.name, recipe.variant_name, options, device, devices)
    if speedups is not None:
        model.speedups = speedups
        module.use_channels_last(speedups.channels_last)
        if speedups.compile:
            module.compile_steps()
    return model


def load(path, device) -> TorchModel:
    """A ``.pt`` file that ``TorchModel.save`` wrote, a Lightning ``.ckpt`` it wrote (with the optimizer's
    state), or a Keras ``.keras`` / ``.h5`` model file (``dual_backend.keras_file``: read without
    TensorFlow, Keras' layout mapped to torch's)."""
    from dual_backend import keras_file

    if keras_file.is_keras_file(path):
        from dual_backend.keras.models import from_saved

        return from_saved(keras_file.read(path), "torch", device)
    if Path(path).suffix == ".ckpt":
        return _load_lightning(path, device)
    checkpoint = load_tensors(path, "a readable dual-backend torch checkpoint")
    if not isinstance(checkpoint, dict) or checkpoint.get("format") not in (FORMAT, FORMAT_1):
        raise DualBackendError(f"{path} is not a dual-backend torch checkpoint (no 'format' entry).")
    return _built(checkpoint, checkpoint["state_dict"], device)


def _load_lightning(path, device) -> TorchModel:
    """A Lightning checkpoint that ``TorchModel.save`` wrote: its model, weights and optimizer's state."""
    checkpoint = load_tensors(path, "a readable Lightning checkpoint")
    saved = checkpoint.get(MODEL_ENTRY) if isinstance(checkpoint, dict) else None
    if not isinstance(saved, dict) or saved.get("format") != FORMAT or "state_dict" not in checkpoint:
        raise DualBackendError(
            f"{path} is a Lightning checkpoint that dual-backend did not write: it has no {MODEL_ENTRY!r} entry "
            "saying which model it holds. Resume it with the LightningModule that wrote it "
            "(Trainer.fit(module, ckpt_path=...)), or convert that model's .keras file: "
            "dual-backend convert IN.keras OUT.ckpt.")
    model = _built(saved, checkpoint["state_dict"], device)
    optimizer_states = checkpoint.get("optimizer_states") or []
    if optimizer_states and model.loss is not None:
        try:
            model.module.configure_optimizers().load_state_dict(optimizer_states[0])
        except (ValueError, KeyError) as error:
            raise DualBackendError(f"{path}: its optimizer state does not fit the model it describes "
                                   f"({error}).") from None
    return model


def _built(saved: dict, state_dict: dict, device) -> TorchModel:
    """The model ``saved`` (:meth:`TorchModel._saved_model`) describes, with ``state_dict``, compiled as saved."""
    import dual_backend

    optimizer = saved["optimizer"] or "rmsprop"
    if saved.get("definition"):  # a dual_backend.keras model: built again from its layers
        from dual_backend.keras.models import from_definition

        model, description = from_definition(saved["definition"], "torch")
        optimizer = description or optimizer
    else:
        model = dual_backend.build(saved["lesson"], backend="torch", variant=saved["variant"],
                                   device=device, **saved["options"])
    model.module.load_state_dict(model.module.keras_named(state_dict))
    if saved["loss"] is not None:
        from dual_backend.keras.losses import Loss

        loss = saved["loss"]
        if saved.get("from_logits"):
            loss = next(kind for kind in Loss.__subclasses__() if kind.name == loss)(from_logits=True)
        model.compile(optimizer=optimizer, loss=loss, metrics=saved["metrics"])
    return model
