"""Level 4's Feast repository: entities, sources, feature views, on-demand views, services.

Split as in Feast's own examples. The definitions are static Python; the paths of the Parquet
sources are relative (``data/...``) and Feast resolves them against the ``repo_path`` of the run
folder that `level4_fraud.feature_store` builds, so one registry per run points at that run's data.
"""
