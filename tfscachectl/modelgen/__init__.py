"""Generated SavedModels: TF Serving's test models rebuilt, per-tenant demo models, a broken and a slow one.

Used by the local stack (``make demo``), the tests and the benchmarks. TensorFlow is imported only
when a model is written. Modules:

- ``catalog``: ``CATALOG`` (name -> ``GeneratedModel``) and version directory naming
- ``store``: ``write_model_store`` writes a whole ``<root>/<model>/<version>/`` tree
- ``__main__``: the same from the command line, ``python -m tfscachectl.modelgen ROOT [--tenants N]``
- ``half_plus_two``, ``half_plus_three``, ``counter``: TF 1 graphs saved with ``SavedModelBuilder``
- ``half_plus_two_tf2``: a native TF 2 SavedModel
- ``tenants``: ``tenant-0001``... (``y = w*x + b``, weights from the tenant number)
- ``broken``: a version directory whose ``saved_model.pb`` is garbage
- ``slow``: a while loop of as many iterations as asked, to make requests that last
"""

from tfscachectl.modelgen.catalog import CATALOG, TESTDATA_EQUIVALENTS, GeneratedModel, VersionNaming
from tfscachectl.modelgen.store import ModelStoreTree, model_store_layout, write_model_store
from tfscachectl.modelgen.tenants import (
    TENANT_VERSION,
    TenantWeights,
    tenant_name,
    tenant_number,
    tenant_weights,
    write_tenant_models,
    write_tenant_range,
)

__all__ = [
    "CATALOG",
    "TENANT_VERSION",
    "TESTDATA_EQUIVALENTS",
    "GeneratedModel",
    "ModelStoreTree",
    "TenantWeights",
    "VersionNaming",
    "model_store_layout",
    "tenant_name",
    "tenant_number",
    "tenant_weights",
    "write_model_store",
    "write_tenant_models",
    "write_tenant_range",
]
