"""``python -m level4_fraud``: the level's command line."""

from shared.runtime import configure_environment

# Before numpy, Prefect, MLflow or torch are imported: thread counts and offline switches are read then.
configure_environment()

from level4_fraud.cli import app  # noqa: E402 - after the environment is set
from shared.cli import run as run_app  # noqa: E402

if __name__ == "__main__":
    run_app(app)
