"""Reinforcement learning of experiment strategies: environment, observation, training, evaluation."""
