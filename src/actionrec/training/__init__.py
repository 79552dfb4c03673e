"""Training (needs the `train` extra): configuration, cached clips, the loop, runs, evaluation, reports.

    config.py    TrainConfig and the dataset recipes (no torch)
    cache.py     per-clip on-disk cache of frames or features
    views.py     the temporal views training decodes from a video (no torch; for worker processes)
    features.py  decoding training views and extracting frozen-backbone features into the cache
    runtime.py   where training runs: device, precision, the ranks of a torchrun run
    data.py      batches streamed from the cache (or decoded afresh), split among ranks
    train.py     the training loop
    advice.py    what to change when a run overfits (read from its history)
    runs.py      the run directory: config, weights, history, resume state, model card, export
    evaluate.py  metrics.py, report.py: evaluation, metrics and the HTML report
"""
