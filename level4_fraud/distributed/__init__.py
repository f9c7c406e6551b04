"""Distributed training of level 4 on Ray, and pipeline parallelism with torch.distributed.

- `cluster`: `RayConfig` and `ray_session` (a private local Ray, or a cluster joined by address).
- `tune`: Ray Tune searches (Optuna search algorithm, ASHA early stopping) over LightGBM and
  PyTorch models, every trial logged to MLflow from the driver.
- `train`: Ray Train data-parallel training of a PyTorch model (`TorchTrainer`, DDP; gloo on
  CPU, NCCL on GPUs, the same code).
- `pipeline_parallel`: a model's two `stages()` run as a two-process pipeline
  (`torch.distributed.pipelining`, GPipe or 1F1B over micro-batches).

Ray and torch are imported by the submodules, not here, so importing the package is cheap.
"""
