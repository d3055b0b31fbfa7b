"""Our own PyTorch implementation of nanochat's base-model pretraining (written from the architecture, not copied)."""
