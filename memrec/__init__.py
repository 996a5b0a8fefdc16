__version__ = "0.1.0"
# The models API (nbs/07z_api.ipynb): `memrec.create_model(...)` etc. nbdev_export rewrites only the line above.
from .api import list_models, model_defaults, create_model, save_model, load_model
