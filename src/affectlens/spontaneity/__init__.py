"""Posed vs spontaneous expressions from onset/apex face pairs (paper 001: comparison-layer CNNs)."""
