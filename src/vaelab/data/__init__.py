"""Data: IDX files (any folder, any image size), verified MNIST, and a run's Dataset."""

from vaelab.data.dataset import DataMismatch as DataMismatch
from vaelab.data.dataset import Dataset as Dataset
from vaelab.data.idx import DataError as DataError
from vaelab.data.idx import load_idx_dir as load_idx_dir
from vaelab.data.idx import read_idx as read_idx
from vaelab.data.idx import to_vectors as to_vectors
from vaelab.data.sources import Source as Source
from vaelab.data.sources import cache_dir as cache_dir
from vaelab.data.sources import checksum_status as checksum_status
from vaelab.data.sources import fetch_mnist as fetch_mnist
from vaelab.data.sources import load_mnist as load_mnist
from vaelab.data.sources import resolve_data_dir as resolve_data_dir
