"""``python -m level2_churn``: the level's command line."""

from level2_churn.cli import app
from shared.cli import run

if __name__ == "__main__":
    run(app)
