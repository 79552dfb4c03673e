"""The model file: what an exported `.onnx` carries besides its graph, torch-free.

`card` (labels, preprocessing, sampling, the head's kind), `unknown` (the "none of these" rule),
`graph_split` (the cut between the encoder and the head), `hub` and `publish` (models by name on
the Hugging Face Hub). Writing a model file from PyTorch lives in `actionrec.training.export`.
"""
