"""The `shop` example application bundled with envkit's `shop` blueprint.

Three entry points share this package: `shop.api` (HTTP API), `shop.migrate` (schema job) and
`shop.worker` (order fulfilment). See each module's docstring.
"""
