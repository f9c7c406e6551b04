"""``python -m level3_recsys.serving <command>``: the serving commands on their own.

The same app as ``python -m level3_recsys serve <command>`` (see `level3_recsys.serving.cli`).
"""

from level3_recsys.serving.cli import app
from shared.cli import run as run_app

if __name__ == "__main__":
    run_app(app)
