"""The autonomous campaign (Level 5b): every phase chained, checkpointed and resumable."""
