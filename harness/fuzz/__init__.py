"""Fuzzing of message framing against a live DUT: areas, liveness oracle, campaigns, findings.

`kentei fuzz` (cli.py) runs deep campaigns; the robustness suite (harness/suites/robustness.py)
runs small bounded bursts of the same areas.
"""
