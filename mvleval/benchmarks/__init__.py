"""The benchmark side: the task model (task.py), benchmark folders (filetask.py), readers of the benchmarks' published
annotation files, images, hub-embedded images, languages and the data check. Built-in tasks live in ../tasks (mvleval.tasks)."""
