"""Data layer: ASE frames → graph dicts of tensors, neighbour lists, batching, statistics."""

from legato.data import keys
from legato.data.graph import (
    Graph,
    atoms_to_graph,
    collate,
    frame_labels,
    graphs_from_frames,
    read_frames,
    species_index,
    to_device,
)
from legato.data.neighbors import neighbor_list
from legato.data.statistics import DatasetStats, dataset_statistics

__all__ = [
    "Graph",
    "DatasetStats",
    "atoms_to_graph",
    "collate",
    "dataset_statistics",
    "frame_labels",
    "graphs_from_frames",
    "keys",
    "neighbor_list",
    "read_frames",
    "species_index",
    "to_device",
]
