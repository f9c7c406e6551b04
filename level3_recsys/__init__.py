"""Level 3: a media recommendation engine — simulator, models, offline evaluation, registry, nightly batch.

Run ``python -m level3_recsys --help``; the README walks through the level.
"""

__all__: list[str] = []
