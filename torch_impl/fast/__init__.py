"""The torch backend's speed paths: none of it is needed to understand a port.

Each path computes what the plain code in ``torch_impl.keras`` computes, is
chosen by one named predicate, and is checked against the plain code by a test:

- ``cpu_kernels``: CPU max-pooling and convolution+pooling without torch's layout reorders;
- ``pool_first``: a ReLU convolution's pooling before its ReLU;
- ``adam``: Keras' Adam through torch's fused CPU kernel, or on one flat buffer on a GPU;
- ``optimizer_steps``: optimizer steps without torch's profiler annotations while nobody records;
- ``chunks``: several Keras steps per Lightning batch;
- ``cuda_graph``: the training step replayed as a CUDA graph on a GPU.

The figures behind them are in docs/speed.md.
"""
