"""The PyTorch Lightning ports, one file per lesson with the same names as ``keras_ref/``.

``_keras_compat.py`` gives the ports Keras' defaults; ``_model.py`` plugs them into the front end.
"""

import logging
import sys

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
