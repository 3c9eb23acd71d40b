"""pytest plugin for envkit (fixtures land with the runner-integration work)."""
