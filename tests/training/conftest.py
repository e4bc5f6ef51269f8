"""Training fixtures live in tests/conftest.py (evaluation and registry tests share them)."""
