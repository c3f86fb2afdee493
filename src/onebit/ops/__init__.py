"""Ops: bit packing and the autograd Functions that keep only what each method keeps."""
