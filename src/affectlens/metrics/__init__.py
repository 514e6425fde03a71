"""Pure metric functions over arrays; each has a reference test (scikit-learn or hand-computed)."""
