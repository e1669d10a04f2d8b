"""What a run says about itself: the run record's schema and files (schema.py) and how it was made (provenance.py).
Everything after a run (score, report, leaderboard, gate) reads records only."""
