"""tuneprune's tests, one folder per package of ``tuneprune`` (plus ``project`` and ``system``).

The folders are packages so that two folders may hold files of the same name
(``tests/evolution/test_evolution.py``, ``tests/reports/test_evolution.py``), and a test
imports another's cases as ``tests.<folder>.<module>``.
"""
