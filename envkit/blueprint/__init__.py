"""Blueprints: loading, the typed model and validation."""

from envkit.blueprint.load import load
from envkit.blueprint.model import Blueprint, Build, Mount, NetworkDef, Port, Probe, Service, VolumeDef

__all__ = ["Blueprint", "Build", "Mount", "NetworkDef", "Port", "Probe", "Service", "VolumeDef", "load"]
