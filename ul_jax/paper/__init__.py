"""This paper's report (not reusable library code): the reproduction suites' claims, verdicts,
figures and docs. ``second_pass`` holds the issue-14 sections (knobs chosen on validation)."""
