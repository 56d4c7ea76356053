"""Routing policies: PORT (paper-faithful and improved), online baselines, offline references."""

from router_core.policies import baselines, offline, port  # noqa: F401  (registers the policies)
from router_core.policies.base import REGISTRY, SKIP, Policy, Stream, create_policy, register

__all__ = ["REGISTRY", "SKIP", "Policy", "Stream", "create_policy", "register"]
