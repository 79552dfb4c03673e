"""Training (needs the `train` extra): configuration, cached clips, the loop, runs, evaluation, reports.

    config.py    TrainConfig and the dataset recipes (no torch)
    cache.py     per-clip on-disk cache of frames or features
    views.py     the temporal views training decodes from a video (no torch; for worker processes)
    features.py  decoding training views and extracting frozen-backbone features into the cache
    runtime.py   where training runs: device, precision, the ranks of a torchrun run
    data.py      batches streamed from the cache (or decoded afresh), split among ranks
    setup.py     what every run sets up: seeds, the split, the model, the feature extractor
    state.py     TrainState (what a step changes; what --resume restores) and the settings fingerprint
    steps.py     one step, one epoch, one validation pass
    train.py     the run: setup, cache, state, epochs
    advice.py    what to change when a run overfits (read from its history)
    runs.py      the run directory: config, weights, history, resume state, model card, export
    evaluate.py  report.py: evaluation of a run on its cached views, and the HTML report
"""
