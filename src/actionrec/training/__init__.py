"""Training (needs the `train` extra): configuration, cached clips, the loop, runs, evaluation, reports.

    config.py    TrainConfig and the dataset recipes (no torch)
    cache.py     per-clip on-disk cache of frames or features
    features.py  decoding training views and extracting frozen-backbone features into the cache
    train.py     the training loop
    runs.py      the run directory: config, weights, history, resume state, model card, export
    evaluate.py  metrics.py, report.py: evaluation, metrics and the HTML report
"""
