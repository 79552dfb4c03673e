"""The runtime: a model file and videos in, answers out, with ONNX Runtime alone (never torch).

In the order a video flows: `network` (the file's two halves, `Encoder` and `Head`), `prediction`
(the answer's stages), `answer` (the answer itself, typed: `Prediction` and its parts), `segments`
(a timeline's segments from each sample's evidence), `recognizer` (`Recognizer`, the stages put
together), `frame_batcher` (frames of concurrent answers encoded together), `watching` (live
sources), `many_videos` and `on_ray` (collections of videos, here or on Ray), `results` (results
files), `precision` (which copy of a model runs), and the processes and cores they run on.
"""
