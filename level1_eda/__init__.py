"""Level 1 — EDA and first models on any CSV (default: Palmer penguins).

Stages, one module each: `data` (load any CSV), `schema` (column roles),
`profile` (data-quality facts), `explore` (figures), `missing` (drop vs fill),
`features` (one-hot pipeline), `train` (model vs baseline), `evaluate`
(metrics and plots), `report` (one HTML file), `predict` (apply a saved
model), `pipeline` (all of it, end to end).
"""

__all__: list[str] = []
