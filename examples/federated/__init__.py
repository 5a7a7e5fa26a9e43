"""Federated ViT on CIFAR-10 (FedAvg and FedLoRA over Dirichlet clients), fed by prebake.

Run it with ``python -m examples.federated --help``; see README.md in this folder.
"""
