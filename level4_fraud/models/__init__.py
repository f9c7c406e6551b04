"""PyTorch models of level 4: tabular MLP, mixture of experts, card-sequence models, training loops."""
