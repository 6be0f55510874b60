"""Writes hookwire's envelopes into ClickHouse: chDB (embedded, PyPI
``chdb``) by default, a ClickHouse server with ``--url`` (PyPI
``clickhouse-connect``). Inserts in batches and acks a batch only once
its insert has committed; a ``ReplacingMergeTree`` keyed by ``id``
absorbs the repeats that at-least-once delivery brings.

    python clickhouse_writer.py --pull tcp://127.0.0.1:5555 \\
        --ack tcp://127.0.0.1:5556 --path ./events.chdb

The table (``hookwire.events``; ``--table`` names another):

    id         UInt64                  the envelope's id (the sorting key)
    time       DateTime64(3)           receive time
    key        LowCardinality(String)  in.gen.<service>.<name>
    service    LowCardinality(String)
    name       LowCardinality(String)
    projectId  UInt64
    uid        String
    td         String                  the envelope's td, JSON
    data       String                  the envelope's data, JSON

    SELECT key, count() FROM hookwire.events FINAL GROUP BY key ORDER BY key
"""

import argparse
import json
import sys

from hookwire_consumer import Consumer

SCHEMA = """
CREATE TABLE IF NOT EXISTS {table} (
    id UInt64,
    time DateTime64(3),
    key LowCardinality(String),
    service LowCardinality(String),
    name LowCardinality(String),
    projectId UInt64,
    uid String,
    td String,
    data String
) ENGINE = ReplacingMergeTree ORDER BY id
"""


def row(event):
    return {
        "id": int(event["id"]),
        "time": event["time"] / 1000,
        "key": event["key"],
        "service": event["service"],
        "name": event["name"],
        "projectId": event["projectId"],
        "uid": event["uid"],
        "td": json.dumps(event["td"], ensure_ascii=False),
        "data": json.dumps(event["data"], ensure_ascii=False),
    }


class ChdbStore:
    """chDB in a directory: one session, inserts as JSONEachRow."""

    def __init__(self, path, table):
        from chdb import session

        self.session = session.Session(path)
        self.table = table
        database = table.split(".")[0] if "." in table else None
        if database:
            self.session.query(f"CREATE DATABASE IF NOT EXISTS {database}")
        self.session.query(SCHEMA.format(table=table))

    def insert(self, rows):
        body = "\n".join(json.dumps(r, ensure_ascii=False) for r in rows)
        self.session.query(f"INSERT INTO {self.table} FORMAT JSONEachRow\n{body}")

    def query(self, sql):
        return str(self.session.query(sql, "CSV")).strip()


class ServerStore:
    """A ClickHouse server through clickhouse-connect."""

    def __init__(self, url, table):
        import clickhouse_connect

        self.client = clickhouse_connect.get_client(dsn=url)
        self.table = table
        if "." in table:
            self.client.command(f"CREATE DATABASE IF NOT EXISTS {table.split('.')[0]}")
        self.client.command(SCHEMA.format(table=table))
        self.columns = ["id", "time", "key", "service", "name", "projectId", "uid", "td", "data"]

    def insert(self, rows):
        self.client.insert(self.table, [[r[c] for c in self.columns] for r in rows],
                           column_names=self.columns)

    def query(self, sql):
        return str(self.client.command(sql))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pull", default="tcp://127.0.0.1:5555", help="endpoint to bind PULL on")
    p.add_argument("--ack", help="the route's --ack-endpoint")
    p.add_argument("--frames", default="json", choices=["json", "key+json"])
    p.add_argument("--path", default="./events.chdb", help="chDB directory")
    p.add_argument("--url", help="a ClickHouse server (clickhouse-connect DSN) instead of chDB")
    p.add_argument("--table", default="hookwire.events")
    p.add_argument("--batch", type=int, default=5000, help="most events per insert")
    p.add_argument("--wait", type=float, default=0.2,
                   help="seconds without a new event before a smaller batch is inserted")
    args = p.parse_args(argv)
    store = ServerStore(args.url, args.table) if args.url else ChdbStore(args.path, args.table)
    consumer = Consumer(args.pull, ack=args.ack, frames=args.frames)
    print("ready", flush=True)
    for batch in consumer.batches(size=args.batch, timeout=args.wait):
        store.insert([row(e) for e in batch])  # committed: acked on the next turn
        print(f"inserted {len(batch)}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
