"""featstore: the data layer between face datasets and the models trained on them."""

__version__ = "0.1.0"
