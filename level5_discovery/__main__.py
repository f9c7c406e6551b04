"""``python -m level5_discovery``: the level's command line."""

from shared.runtime import configure_environment

# Before numpy, torch, transformers or MLflow are imported: thread counts and offline switches are read then.
configure_environment()

from level5_discovery.cli import app  # noqa: E402 - after the environment is set
from shared.cli import run as run_app  # noqa: E402

if __name__ == "__main__":
    run_app(app)
