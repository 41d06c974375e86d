"""The service chain: each MDM request passes through these in order."""
