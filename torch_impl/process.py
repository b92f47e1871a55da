"""What the torch backend sets in its process, and when: explicitly, never on import.

- before torch starts (``before_framework_starts``, called by the front end
  before it imports ``torch_impl.backend``): transparent huge pages for large
  tensors;
- as ``torch_impl`` is imported, only in a process that already holds
  TensorFlow: Triton kept out (``keep_triton_out_after_tensorflow``), which
  would crash it;
- around every fit, evaluate and predict (``TorchModel._computing``): the
  intra-op thread count, denormals flushed to zero as TensorFlow does,
  memory freed between steps kept for the next step, and Lightning's
  messages that do not apply to this project silenced.

Everything here is put back when the block ends, except what must be set
before torch starts.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import logging
import os
import sys
import warnings
from pathlib import Path

import torch

from dual_backend import validation


def before_framework_starts() -> None:
    """Settings torch reads as it starts; a value the user set is kept.

    Tensors of 2 MB and more go in transparent huge pages (PyTorch's CPU
    tuning guide: ``THP_MEM_ALLOC_ENABLE=1``; off by default in torch because
    it can round memory up).  torch reads the setting at its first CPU
    allocation, which importing Lightning already makes, so it is set only
    while Lightning is not loaded.  Memory layout only: every result is the
    same (the page faults it saves: docs/speed.md).
    """
    if "lightning" not in sys.modules:
        os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")
    keep_triton_out_after_tensorflow()


def keep_triton_out_after_tensorflow() -> None:
    """Tell torch that Triton is absent when TensorFlow is already loaded; else do nothing.

    TensorFlow and Triton (which torch imports when it can, with Lightning)
    each bring their own LLVM, and loading libtriton into a process that
    already holds TensorFlow crashes it with a segmentation fault.  Without
    Triton torch uses no Triton kernels (GPU torch.compile needs them; nothing
    else here does).  Use the torch backend first, or one backend per process,
    to keep Triton.  ``torch_impl/__init__.py`` calls this, the one thing an
    import of the torch backend does, because the crash would come with the
    import itself.
    """
    if "tensorflow" in sys.modules and "triton" not in sys.modules:
        sys.modules["triton"] = None
        # ...which torch's FLOP counter would otherwise mention on every import.
        logging.getLogger("torch.utils.flop_counter").setLevel(logging.ERROR)


@contextlib.contextmanager
def lightning_quiet():
    """Lightning's messages that do not apply here, silenced while the block runs; then restored."""
    logger = logging.getLogger("lightning.pytorch")
    level = logger.level
    # Lightning announces the hardware on every Trainer; the front end prints its own lines.
    logger.setLevel(max(level, logging.WARNING))
    with warnings.catch_warnings():
        # Advice that does not apply: evaluation-free fits skip validation on purpose,
        # and the batches are device tensors, not a DataLoader that workers could speed up.
        warnings.filterwarnings("ignore", message=".*validation_step.*but have no `val_dataloader`.*")
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=".*isinstance\\(treespec, LeafSpec\\)` is deprecated.*")
        # The epoch logs are already summed over DDP's processes (EpochMeans.compute(across_processes=True)).
        warnings.filterwarnings("ignore", message=".*when logging on epoch level in distributed setting.*")
        try:
            yield
        finally:
            logger.setLevel(level)


@contextlib.contextmanager
def intra_op_threads(count: int | None):
    """Run with ``count`` intra-op threads (``None``: torch's default), then restore."""
    before = torch.get_num_threads()
    if count:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def denormals_flushed():
    """Compute with denormal floats flushed to zero on the CPU, as TensorFlow does; then restore.

    TensorFlow sets the processor's flush-to-zero and denormals-are-zero
    flags on the threads that run its kernels, so under Keras a float32
    below 1.2e-38 is 0: ``tf.constant(1e-38) * 0.5`` gives 0.0.  torch keeps
    denormals.  The flags belong to each thread, and ``torch.set_flush_denormal``
    sets the calling thread's only, so torch's intra-op threads get them too
    (``_set_flush_denormal_everywhere``).  CUDA kernels are not affected.
    """
    before = flushing_denormals()
    _set_flush_denormal_everywhere(True)
    try:
        yield
    finally:
        _set_flush_denormal_everywhere(before)


def flushing_denormals() -> bool:
    """Whether torch's CPU kernels flush denormals to zero now, on every intra-op thread.

    torch has no getter: a multiplication that gives denormals, split over the
    threads, is asked, and its bits are counted as integers (a denormals-are-zero
    thread would count denormals as zeros)."""
    halves = torch.full((1 << 20,), 1e-38, dtype=torch.float32).mul_(0.5)
    return int(torch.count_nonzero(halves.view(torch.int32))) == 0


def _set_flush_denormal_everywhere(on: bool) -> None:
    """``torch.set_flush_denormal(on)`` for this thread and torch's OpenMP threads.

    A new thread starts with its creator's flags.  So after setting this
    thread's, torch's OpenMP thread pool is let go (``omp_pause_resource_all``,
    hard: libgomp ends the pool's threads) and the next parallel region starts
    new ones, which copy this thread's flags.  Without libgomp (another
    parallel backend) only this thread is set."""
    torch.set_flush_denormal(on)
    gomp = _torch_libgomp()
    if gomp is not None:
        gomp.omp_pause_resource_all(ctypes.c_int(2))  # omp_pause_hard


@functools.cache
def _torch_libgomp():
    if "OpenMP" not in torch.__config__.parallel_info():
        return None
    for library in (Path(torch.__file__).parent / "lib").glob("libgomp*.so*"):
        return ctypes.CDLL(str(library))
    try:
        return ctypes.CDLL("libgomp.so.1")
    except OSError:
        return None


# glibc's mallopt parameters (malloc.h) and the values glibc settles on by itself: its mmap
# threshold climbs to 32 MiB (the most it accepts on 64-bit systems), the trim threshold to twice that.
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_MMAP_MAX = -1, -3, -4
GLIBC_MMAP_THRESHOLD_MAX = 32 << 20
GLIBC_TRIM_THRESHOLD_SETTLED = 2 * GLIBC_MMAP_THRESHOLD_MAX
GLIBC_MMAP_MAX_DEFAULT = 65536
_kept_depth = 0


@contextlib.contextmanager
def freed_memory_kept():
    """Keep the memory freed between training steps for the next step; give it back at the end.

    A CPU step allocates its activations and gradients afresh (torch has no
    caching allocator on the CPU) and frees them.  With glibc's defaults a
    freed block of more than 32 MiB, or a freed top of the heap beyond the trim
    threshold, goes back to the system, and the next step faults every page of
    it in again, zero-filled by the kernel.  The same steps, the same results:
    the faults are kernel time (counts and timings in docs/speed.md).

    Inside this block every block comes from the heap (no mmap) and nothing
    is trimmed, so a step reuses the last step's pages.  Trimming is off, not
    just raised: a large model's step can free more than any fixed threshold
    at the top of the heap, and glibc would then give it back every step.
    This is PyTorch's own advice for CPU training (its performance-tuning
    guide: a caching malloc such as jemalloc or tcmalloc) done with glibc's
    ``mallopt`` instead of a preloaded library.  On the way out mmap is
    allowed again, the thresholds are left where glibc's dynamic ones settle,
    and the free memory is handed back (``malloc_trim``).  Other C libraries,
    other systems: nothing changes.  Re-entrant.

    The price is memory: the heap keeps what it served, fragments included.
    With ``DUAL_BACKEND_FREED_MEMORY=return`` glibc's own behaviour is kept.
    """
    global _kept_depth
    libc = _glibc()
    if libc is None or not _keeping_freed_memory():
        yield
        return
    if _kept_depth == 0:
        libc.mallopt(M_MMAP_THRESHOLD, GLIBC_MMAP_THRESHOLD_MAX)
        libc.mallopt(M_MMAP_MAX, 0)
        libc.mallopt(M_TRIM_THRESHOLD, -1)  # glibc: -1 disables trimming
    _kept_depth += 1
    try:
        yield
    finally:
        _kept_depth -= 1
        if _kept_depth == 0:
            libc.mallopt(M_MMAP_MAX, GLIBC_MMAP_MAX_DEFAULT)
            libc.mallopt(M_TRIM_THRESHOLD, GLIBC_TRIM_THRESHOLD_SETTLED)
            libc.malloc_trim(0)


FREED_MEMORY_VARIABLE = "DUAL_BACKEND_FREED_MEMORY"


def _keeping_freed_memory() -> bool:
    value = os.environ.get(FREED_MEMORY_VARIABLE, "keep")
    if value not in ("keep", "return"):
        raise validation.DualBackendError(
            f"{FREED_MEMORY_VARIABLE}={value!r}: use 'keep' (the default: memory freed between steps is reused) "
            "or 'return' (glibc gives it back to the system at once: slower, less resident memory).")
    return value == "keep"


@functools.cache
def _glibc():
    """The process's C library if it is glibc (it has ``mallopt`` and ``malloc_trim``), else None."""
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018 - glibc only
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
        return libc
    except (OSError, AttributeError):
        return None
