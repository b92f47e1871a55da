"""The PyTorch Lightning ports, one file per lesson with the same names as ``keras_ref/``.

``_keras_compat.py`` gives the ports Keras' defaults; ``_model.py`` plugs them into the front end.
"""
