"""``python -m level3_recsys``: the level's command line."""

from level3_recsys.cli import app
from shared.cli import run as run_app

if __name__ == "__main__":
    run_app(app)
