"""The blueprint's networks as NetworkPolicies of the run's namespace. Pure.

On one Docker engine a container reaches exactly the containers that share one of its networks, and
an ``internal`` network has no route out. In a namespace every pod reaches every pod, so:

* ``envkit-default-deny`` selects every pod of the namespace and allows nothing, in or out;
* ``envkit-dns`` lets every pod ask the cluster's DNS (port 53, UDP and TCP), so service names resolve;
* ``envkit-net-<network>`` selects the pods labelled ``io.envkit.network.<network>: "true"`` and allows
  traffic in from and out to those pods only; policies add up, so a pod on two networks reaches both;
* ``envkit-out-<network>`` (networks that are not ``internal``): those pods may open connections to
  addresses outside the cluster's pods of this namespace (``0.0.0.0/0``, ``::/0``), as a Docker bridge
  network routes out. Other runs stay unreachable: their own default-deny refuses what comes in.

What the policies do not govern: the kubelet's probes and ``port-forward`` (they enter the pod from its
node, which network plugins let through), and anything on a cluster whose network plugin does not
enforce NetworkPolicy (kindnet before v0.20, flannel alone): there the run is not isolated.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from envkit.backends._kube_objects import dns_label, metadata, network_label

__all__ = ["DEFAULT_DENY", "DNS", "network_policies", "network_policy"]

DEFAULT_DENY = "envkit-default-deny"
DNS = "envkit-dns"


def _policy(name: str, labels: Mapping[str, str], ns: str, selector: dict[str, Any], ingress: list[Any] | None,
            egress: list[Any] | None) -> dict[str, Any]:
    spec: dict[str, Any] = {"podSelector": selector, "policyTypes": ["Ingress", "Egress"]}
    if ingress is not None:
        spec["ingress"] = ingress
    if egress is not None:
        spec["egress"] = egress
    if ingress is None:  # only one direction governed by this policy
        spec["policyTypes"] = ["Egress"]
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": metadata(name, labels, ns),
            "spec": spec}


def baseline(labels: Mapping[str, str], ns: str) -> list[dict[str, Any]]:
    """The namespace's default deny and the DNS exception every pod needs."""
    dns_ports = [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]
    return [_policy(DEFAULT_DENY, labels, ns, {}, [], []),
            _policy(DNS, labels, ns, {}, None, [{"ports": dns_ports}])]


def network_policy(network: str, internal: bool, labels: Mapping[str, str], ns: str) -> list[dict[str, Any]]:
    """The policies of one blueprint network: peers on it reach each other; out of the cluster unless internal."""
    member = {"matchLabels": {network_label(network): "true"}}
    peers = [{"podSelector": member}]
    out = [_policy(dns_label(f"envkit-net-{network}"), labels, ns, member, [{"from": peers}], [{"to": peers}])]
    if not internal:
        world = [{"ipBlock": {"cidr": "0.0.0.0/0"}}, {"ipBlock": {"cidr": "::/0"}}]
        out.append(_policy(dns_label(f"envkit-out-{network}"), labels, ns, member, None, [{"to": world}]))
    return out


def network_policies(networks: Mapping[str, bool], labels: Mapping[str, str], ns: str) -> list[dict[str, Any]]:
    """Every policy of a run: ``networks`` maps each blueprint network the run uses to its ``internal`` flag."""
    out = baseline(labels, ns)
    for name, internal in sorted(networks.items()):
        out += network_policy(name, internal, {**labels, "io.envkit.network": name}, ns)
    return out
