"""Evaluating exported model files on a dataset, without torch: `model_files` (the clips, the
answers, the "none of these" check) and `scores` (accuracy, confusion, per-class figures)."""
