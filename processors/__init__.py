"""The stream processors: a faust-streaming app that turns Kafka bundles into ClickHouse rows."""
