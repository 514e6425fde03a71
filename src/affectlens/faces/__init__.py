"""Shared face tools: detection, 68-point landmarks, masks."""
