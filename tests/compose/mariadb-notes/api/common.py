import os

import pymysql
import redis


def db():
    return pymysql.connect(host=os.environ["DB_HOST"], user=os.environ["DB_USER"],
                           password=os.environ["DB_PASSWORD"], database=os.environ["DB_NAME"],
                           autocommit=True, connect_timeout=5)


def cache():
    return redis.Redis.from_url(os.environ["REDIS_URL"], socket_timeout=5)
