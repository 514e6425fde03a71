"""Thin training glue shared by all rooms: seeding, checkpoints (state_dict + JSON config), devices."""
from affectlens.training.checkpoint import count_parameters, load_checkpoint, save_checkpoint
from affectlens.training.seed import seed_everything

__all__ = ["count_parameters", "load_checkpoint", "save_checkpoint", "seed_everything"]
