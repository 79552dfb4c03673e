"""Teaching a model new actions from a few clips each, with NumPy alone: `flow` (clips in, a
taught model file out), `head` (the head fitted on the base's frame features), `graph` (the taught
model's ONNX graph)."""
