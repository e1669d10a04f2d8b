"""One evaluation run, one job a module: plan (what to evaluate) -> generate (batches through a backend) -> score ->
files (record, per-sample file, manifest); `evaluate` ties them together and `rescore` scores a record again.

The modules import each other in that order only (files and score import nothing of the run but `SampleRow`), and
nothing here imports torch at import time.
"""
