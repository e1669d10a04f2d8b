"""The benchmark adapters, one file per task (file stem = task name). Installed as the package mvleval.tasks."""
