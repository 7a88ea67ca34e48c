import os

import torch

# Under pytest-xdist every worker is its own process; letting each use all cores would
# oversubscribe the machine (2 workers x 2 threads on 2 cores runs several times slower).
if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)
