"""The collector: accepts Segment-style HTTP batches and writes them durably to Kafka."""
