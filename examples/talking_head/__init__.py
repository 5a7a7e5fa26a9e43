"""Talking-head training (FLOAT) fed three ways: the original two datasets and prebake.

Run it with ``python -m examples.talking_head --help``; see README.md in this folder.
"""
