"""Benchmarks: reputable against OpenDKIM and dkimpy-milter, through Postfix and directly.

Run ``.venv/bin/python -m benchmarks.run --preset standard`` (or ``make bench``);
see benchmarks/README.md.
"""
