"""Prints each event once, and acks it: run hookwire with
--push tcp://127.0.0.1:5555 --ack-endpoint '*=tcp://127.0.0.1:5556'."""
import sys

from hookwire_consumer import Consumer

consumer = Consumer("tcp://127.0.0.1:5555", ack="tcp://127.0.0.1:5556")
try:
    for batch in consumer.batches():
        for event in batch:
            print(event["id"], event["key"], event["data"])
        sys.stdout.flush()  # processed: acked when the next batch is asked for
except KeyboardInterrupt:
    consumer.close()
