"""Benchmarks: commands that measure, never timed assertions in tests. Each compares figures measured
side by side in one run (these machines are shared and noisy), and reports ratios.

    inference.py  answers and timelines against their floors; int8 beside fp32; a server's memory
    inputs.py     the inputs every machine measures on (`actionrec benchmark-inputs`)
    training.py   cache building and training steps (`actionrec benchmark-train`; needs torch)
"""
