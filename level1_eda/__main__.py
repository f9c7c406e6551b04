"""`python -m level1_eda`: the level's command line."""

from level1_eda.cli import app
from shared.cli import run

if __name__ == "__main__":
    run(app)
