"""Order of the examples in the gallery: the estimators first, then the theory scripts."""

ORDER = [
    "quickstart.py",
    "regression.py",
    "grid_search.py",
    "persistence.py",
    "randman_raster.py",
    "nir_export.py",
    "scaling_out_dask.py",
    "theory_single_neuron.py",
    "theory_bias.py",
    "theory_loop.py",
    "theory_fano.py",
    "theory_temperature_sweep.py",
]


class ExampleOrder:
    """sphinx-gallery ``within_subsection_order`` key: listed files in ORDER, others after."""

    def __init__(self, src_dir):
        self.src_dir = src_dir

    def __repr__(self):
        # sphinx-gallery compares configurations by repr to decide what to rebuild.
        return f"ExampleOrder({ORDER})"

    def __call__(self, filename):
        return (ORDER.index(filename), "") if filename in ORDER else (len(ORDER), filename)
