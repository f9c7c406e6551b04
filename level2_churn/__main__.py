"""``python -m level2_churn``: the level's command line."""

from shared.runtime import configure_environment

# Before numpy, Prefect or MLflow are imported: thread counts and offline switches are read then.
configure_environment()

from level2_churn.cli import app  # noqa: E402 - after the environment is set
from shared.cli import run  # noqa: E402

if __name__ == "__main__":
    run(app)
