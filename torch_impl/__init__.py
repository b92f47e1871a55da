"""The PyTorch Lightning ports, one file per lesson with the same names as ``keras_ref/``.

``_keras_compat.py`` gives the ports Keras' defaults; ``_model.py`` plugs them into the front end.
"""

import logging
import os
import sys

# Tensors of 2 MB and more in transparent huge pages (PyTorch's CPU tuning
# guide: "THP_MEM_ALLOC_ENABLE=1"; off by default in torch because it can
# round memory up).  torch reads the setting once, at its first allocation,
# so it only takes effect when torch_impl comes before torch; a value the user
# set is kept.  A horse_or_human step of 32 images faulted ~580,000 pages in
# with the defaults, 230,000-340,000 with freed memory kept
# (``_keras_compat.freed_memory_kept``) and 11,000-12,000 with huge pages too
# (1.2 s, 0.9-1.2 s, 0.65-0.9 s a step here).  Memory layout only: every
# result is the same.
if "torch" not in sys.modules:
    os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

# TensorFlow 2.21 and Triton (which torch imports when it can) each bring their
# own LLVM, and loading libtriton into a process that already holds
# TensorFlow's crashes it with a segmentation fault.  When TensorFlow came
# first, torch is told Triton is absent: it then uses no Triton kernels (GPU
# torch.compile needs them; nothing else here does).  Import the torch backend
# first, or use one backend per process, to keep Triton.
if "tensorflow" in sys.modules and "triton" not in sys.modules:
    sys.modules["triton"] = None
    # ...which torch's FLOP counter would otherwise mention on every import.
    logging.getLogger("torch.utils.flop_counter").setLevel(logging.ERROR)
