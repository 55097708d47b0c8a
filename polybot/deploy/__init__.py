"""Deployment targets for a built project."""
