"""Face anonymization and identity obfuscation (paper 004)."""
