"""What the tests share: synthetic MNIST files, the installed CLI as a user runs it, and run checks.

Imported as `helpers` (pytest puts tests/ on sys.path through tests/conftest.py).
"""
