"""Fuzzing of message framing against a live DUT: areas, liveness oracle, campaigns, findings.

`kentei fuzz` (cli.py) runs deep campaigns; the robustness suite (harness/suites/robustness.py)
runs small bounded bursts of the same areas. `kentei fuzz --workers N` (workers_cli.py) runs N of
those campaigns as processes (workers.py) and merges their findings (merge.py); they share
Hypothesis's example database, a folder or a redis server (database.py).
"""
