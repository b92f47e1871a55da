"""The PyTorch Lightning ports, one file per lesson with the same names as ``keras_ref/``.

- ``keras/``: what makes a torch model behave as Keras (layers, optimizers, losses, ``Sequential``);
- ``fast/``: the speed paths, none of them needed to read a port;
- ``plain_loop.py``: a lesson's model trained by a plain PyTorch loop, no Lightning;
- ``process.py``: what the backend sets in its process, and when;
- ``backend.py``: the backend behind the front end (``dual_backend.build(..., backend="torch")``).

Importing any of them changes nothing in the process (tests/torch_impl/test_process.py), with one
exception: in a process that already holds TensorFlow, Triton is kept out, since loading it
there would crash the process (``process.keep_triton_out_after_tensorflow``).
"""

from torch_impl.process import keep_triton_out_after_tensorflow

keep_triton_out_after_tensorflow()
