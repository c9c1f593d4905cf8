"""PyTorch reference implementations for the parity goldens (tools/make_parity_goldens.py) and the
model benchmark. Our own small re-implementations of the original architectures' semantics, written
for this purpose, with module attributes named so that state_dict() keys are segdist's."""
