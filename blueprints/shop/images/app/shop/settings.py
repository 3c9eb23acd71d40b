"""Configuration from the environment, and the Redis client."""

import os

import redis

DATABASE_URL = os.environ.get("DATABASE_URL", "postgresql://shop:shop@db:5432/shop")
REDIS_URL = os.environ.get("REDIS_URL", "redis://cache:6379/0")
PAYMENTS_URL = os.environ.get("PAYMENTS_URL", "http://payments:8000").rstrip("/")
# How long the API waits for the payment gateway (connect and answer) before it answers 504.
GATEWAY_TIMEOUT_S = float(os.environ.get("GATEWAY_TIMEOUT_S", "10"))

# The Redis list the API pushes paid order ids onto (RPUSH) and the worker takes them from (BLPOP).
ORDER_QUEUE = "orders:queue"


def redis_client() -> "redis.Redis":
    """A client with its own connection pool (thread-safe). Connects lazily, on first command."""
    return redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2, socket_timeout=5, health_check_interval=30)
