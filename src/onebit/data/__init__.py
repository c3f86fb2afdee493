"""Datasets, by registered name: ``cifar10``, ``cifar100``, ``fashion_mnist``, ``imagenet``."""

from . import datasets  # noqa: F401  (registers the datasets)
from .datasets import DATASETS, Dataset, get_dataset, list_datasets
from .formats import DatasetError

__all__ = ["DATASETS", "Dataset", "DatasetError", "get_dataset", "list_datasets"]
