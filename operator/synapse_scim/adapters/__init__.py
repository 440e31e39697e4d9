"""Thin adapters at the edges: Azure (Entra credentials, Microsoft Graph, Synapse access control) and Kubernetes."""
