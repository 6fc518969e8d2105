"""Data loading: SIB-200, the user's own labeled files and Hugging Face datasets, checked the same way.

Kept free of TensorFlow so that configs and data can be checked quickly.
"""

from kmexp.data.files import LabeledFiles
from kmexp.data.hf import HFDataset
from kmexp.data.sib200 import SIB200, sib200_codes
from kmexp.data.splits import Split, Splits

__all__ = ["SIB200", "HFDataset", "LabeledFiles", "Split", "Splits", "sib200_codes"]
