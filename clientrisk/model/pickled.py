"""Reading a pickled model, including one pickled before the package existed.

Models saved by the versions whose modules stood at the top level name the model's own parts by
those modules (`features.ActivityImputer`, `features.SplineBasis`, `project.client_features`);
they are found where they live now. Models saved since name `clientrisk.model.features` and load
with plain `pickle.load` in any folder where the package is installed.
"""

from __future__ import annotations

import pickle

# Where the parts of models pickled by the top-level layout live now.
MOVED_MODULES = {"features": "clientrisk.model.features", "project": "clientrisk.model.features"}


class _ModelUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        return super().find_class(MOVED_MODULES.get(module, module), name)


def load_model_file(handle):
    """The model pickled in the open binary file `handle`."""
    return _ModelUnpickler(handle).load()
