"""Level 2: customer churn prediction on messy multi-source data.

A seeded subscription business (customers, billing, support tickets, daily usage) with a hidden churn
hazard and deliberate mess; ingest with validation and quarantine; point-in-time monthly snapshots;
walk-forward validation; imbalance treatments and feature selection compared by evidence; LightGBM
tuned with Optuna and tracked in MLflow; calibrated probabilities judged by a retention campaign's
profit; a Prefect flow and a DVC pipeline. The modelling stages also run on the IBM Telco layout.

Run ``python -m level2_churn --help``.
"""
