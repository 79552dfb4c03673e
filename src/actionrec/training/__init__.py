"""Training (needs the `train` extra): the model, configuration, cached clips, the loop, runs, export,
evaluation, reports. The one room that imports torch.

    model.py     ActionModel: forward_features (MobileNetV2) and forward_head (the temporal head)
    export.py    a model -> one ONNX file with its card, checked against PyTorch
    quantize.py  the int8 copy of a model file, calibrated on real clips

    config.py    TrainConfig and the dataset recipes (no torch)
    cache.py     per-clip on-disk cache of frames or features
    views.py     the temporal views training decodes from a video (no torch; for worker processes)
    features.py  decoding training views and extracting frozen-backbone features into the cache
    devices.py   where training runs: device, precision, the ranks of a torchrun run
    data.py      batches streamed from the cache (or decoded afresh), split among ranks
    setup.py     what every run sets up: seeds, the split, the model, the feature extractor
    state.py     TrainState (what a step changes; what --resume restores) and the settings fingerprint
    steps.py     one step, one epoch, one validation pass
    train.py     the run: setup, cache, state, epochs
    advice.py    what to change when a run overfits (read from its history)
    runs.py      the run directory: config, weights, history, resume state, model card, export
    run_evaluation.py  a run evaluated on its cached views; report.py, plots.py: the HTML report
"""
