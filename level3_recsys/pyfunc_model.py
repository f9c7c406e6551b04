"""MLflow "models from code" entry point for level-3 recommenders.

`tracking.log_training_run` logs this file as the model's code instead of a
pickled Python object, so a logged model never depends on cloudpickle. MLflow
executes the file when the model is loaded; ``set_model`` is the one
statement it looks for (an intended import-time call, unlike the rest of the
package).
"""

from mlflow.models import set_model

from level3_recsys.tracking import RecommenderModel

set_model(RecommenderModel())
