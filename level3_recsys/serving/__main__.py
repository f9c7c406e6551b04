"""``python -m level3_recsys.serving serve``: start the model service(s) and the API."""

from level3_recsys.serving.cli import serving_app
from shared.cli import run as run_app

if __name__ == "__main__":
    run_app(serving_app)
