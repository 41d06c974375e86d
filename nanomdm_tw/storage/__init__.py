"""Storage backends; each provides every role in ``interfaces``."""
